"""Tiny random models and a byte tokenizer for every supported family: built locally, no network."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import (
    AutoModelForCausalLM,
    Gemma2Config,
    Gemma3TextConfig,
    GPT2Config,
    LlamaConfig,
    MistralConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen3Config,
)

VOCAB = 260  # 256 bytes + 3 special tokens, rounded up
_LLAMA_LIKE = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
    pad_token_id=257,
    bos_token_id=256,
    eos_token_id=258,
)
TINY_CONFIGS = {
    "llama": lambda: LlamaConfig(**_LLAMA_LIKE),
    "mistral": lambda: MistralConfig(**_LLAMA_LIKE),
    "qwen2": lambda: Qwen2Config(**_LLAMA_LIKE),
    "qwen3": lambda: Qwen3Config(**_LLAMA_LIKE, head_dim=8),
    "gemma2": lambda: Gemma2Config(**_LLAMA_LIKE, head_dim=8),
    "gemma3_text": lambda: Gemma3TextConfig(**_LLAMA_LIKE, head_dim=8),
    "gpt2": lambda: GPT2Config(
        vocab_size=VOCAB,
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_positions=128,
        n_inner=64,
        pad_token_id=257,
        bos_token_id=256,
        eos_token_id=258,
    ),
}


def _byte_characters() -> dict[int, str]:
    """GPT-2's byte -> character map, the one ByteLevel uses. (``ByteLevel.alphabet()`` is the
    same characters in a hash-set order that changes from process to process, which made token
    ids, and so every tiny-model result, differ between runs.)"""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    shifted = [b for b in range(256) if b not in printable]
    return {b: chr(b) for b in printable} | {b: chr(256 + i) for i, b in enumerate(shifted)}


def tiny_tokenizer(bos: bool = True) -> PreTrainedTokenizerFast:
    """A byte-level tokenizer (one token per byte) that prepends <bos> (unless ``bos`` is
    False, as SmolLM2's does not)."""
    vocab = {ch: byte for byte, ch in _byte_characters().items()}  # token id = byte value
    vocab.update({"<bos>": 256, "<pad>": 257, "<eos>": 258})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    if bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<bos> $A", special_tokens=[("<bos>", 256)]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", pad_token="<pad>", eos_token="<eos>"
    )


def build_tiny_model(family: str, seed: int = 0):
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(TINY_CONFIGS[family]()).eval()


SHARP_FFN = 256  # the FFN width of ``save_sharp_llama``'s model


def save_sharp_llama(path) -> str:
    """Save a tiny llama with 10x the default init scale and a 256-wide FFN (edit tests): its
    logits have the range an edit needs to win top-1 by a clear margin, and its FFN keys are
    specific enough for an update through one key to leave other tokens nearly alone (with a
    64-wide FFN every token's key overlaps the subject's by 0.3-0.6, and the margins are float
    noise)."""
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(
        LlamaConfig(**{**_LLAMA_LIKE, "intermediate_size": SHARP_FFN}, initializer_range=0.2)
    )
    model.eval().save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return str(path)


def save_broken_model_copies(model_dir, root) -> None:
    """Copies of a saved model under ``root``: ``noweights``, ``binonly`` (a stand-in .bin, never
    unpickled) and ``truncated`` (its safetensors cut short)."""
    import shutil
    from pathlib import Path

    for broken in ("noweights", "binonly", "truncated"):
        shutil.copytree(model_dir, Path(root) / broken)
        weights = Path(root) / broken / "model.safetensors"
        if broken == "truncated":
            weights.write_bytes(weights.read_bytes()[:5000])
        else:
            weights.unlink()
    (Path(root) / "binonly" / "pytorch_model.bin").write_bytes(b"a pickle would be here")
