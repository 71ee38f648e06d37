"""load_model(spec): built-in name, local HF directory, Hub id or .gguf file -> LoadedModel."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from brickwork.errors import BrickworkError
from brickwork.io import replace_dir_atomically, sha256_file
from brickwork.models.builtin import BUILTINS, DEFAULT_MODEL
from brickwork.models.device import model_device, place_model
from brickwork.models.device import placement as _placement
from brickwork.models.estimate import check_weights_fit
from brickwork.models.families import Family, family_for

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# Config keys that say where or how a model was loaded, not what it is.
_VOLATILE_CONFIG_KEYS = {"transformers_version", "quantization_config", "dtype", "torch_dtype"}


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object
    family: Family
    fingerprint: str  # ties bricks and profiles to these exact base weights
    source: str  # what was loaded: a path or a Hub id
    # Where plain transformers loads these same weights (a directory or Hub id), if anywhere.
    hf_location: str | None = None

    @property
    def device(self) -> torch.device:
        """Where inputs go: the input embeddings' device (``models.device.model_device``)."""
        return model_device(self.model)

    def require_base(self, base: str | None, what: str) -> None:
        """Refuse ``what`` (a brick, router, index...) unless it was made for these exact base
        weights: the one check of a base-model fingerprint."""
        if base != self.fingerprint:
            raise BrickworkError(
                f"{what} was made for base model {base}, not this model ({self.fingerprint})"
            )


CACHE_CHECKSUMS = "brickwork-checksums.json"  # sha256 of every file of a cached model


def cache_root() -> Path:
    """Where dequantized GGUF models are cached (override with BRICKWORK_CACHE)."""
    default = Path.home() / ".cache" / "brickwork"
    return Path(os.environ.get("BRICKWORK_CACHE", default)).expanduser()


def load_model(
    spec: str = DEFAULT_MODEL,
    *,
    trust_remote_code: bool = False,
    cache_dir: Path | None = None,
    device: str | None = None,
    dtype: str | None = None,
    device_map: str | None = None,
) -> LoadedModel:
    """Load a causal LM for analysis, in eval mode, on ``device`` in ``dtype``.

    ``spec`` is a built-in name (see ``brickwork models``), a local Hugging Face model directory,
    a ``.gguf`` file, or a Hub id such as ``HuggingFaceTB/SmolLM2-135M-Instruct``.
    GGUF weights are dequantized once and cached as safetensors under ``cache_dir``.
    ``device`` (auto, cpu, cuda, cuda:N) and ``dtype`` (auto, float32, bfloat16, float16) default
    to $BRICKWORK_DEVICE / $BRICKWORK_DTYPE, else cpu and float32 (``models.device``).
    ``device_map="auto"`` spreads a model too large for one device over all of them (accelerate).
    """
    place = _placement(device, dtype, device_map)
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    if spec in BUILTINS:
        return _load_gguf(BUILTINS[spec].gguf_path(root), root, source=spec, place=place)
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return _load_gguf(path, root, source=str(path), place=place)
    if path.is_dir() and (path / "grown.json").is_file():  # exact grown shapes (ops/grow)
        from brickwork.ops.grow.store import load_grown

        grown = load_grown(path, trust_remote_code=trust_remote_code, device=device, dtype=dtype)
        return grown.loaded
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise BrickworkError(f"{spec} is a directory without config.json, not a model")
        return _load_hf(str(path), trust_remote_code, place=place)
    if path.exists():
        raise BrickworkError(f"{spec} is neither a model directory nor a .gguf file")
    if _HUB_ID.match(spec) and not spec.endswith(".gguf"):
        return _load_hf(spec, trust_remote_code, place=place)
    builtins = ", ".join(sorted(BUILTINS))
    raise BrickworkError(f"no such model path: {spec} (built-in models: {builtins})")


def _load_hf(
    name_or_path: str, trust_remote_code: bool, source: str | None = None, place=None
) -> LoadedModel:
    try:
        config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except OSError as exc:
        if Path(name_or_path).exists():
            raise BrickworkError(f"cannot read model config in {name_or_path}: {exc}") from None
        raise BrickworkError(
            f"cannot fetch {name_or_path!r} from the Hugging Face Hub "
            "(offline, or no such model id); pass a local directory or .gguf file instead"
        ) from None
    except ValueError as exc:  # unknown model_type
        raise BrickworkError(f"cannot load {name_or_path}: {str(exc).splitlines()[0]}") from None
    family = family_for(config)
    if Path(name_or_path).is_dir():
        _check_weights(Path(name_or_path))
    place = place or _placement()
    check_weights_fit(config, place, source or name_or_path)
    model, weights = place_model(name_or_path, trust_remote_code, place)
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    loaded = _finish(model, tokenizer, family, source or name_or_path, weights)
    local = Path(name_or_path)
    loaded.hf_location = str(local.resolve()) if local.is_dir() else name_or_path
    return loaded


def _check_weights(folder: Path) -> None:
    """A local model directory must hold whole safetensors weights (never pickled .bin files)."""
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        pickled = " (only pickled .bin weights, which brickwork never loads)"
        found = pickled if any(folder.glob("*.bin")) else ""
        raise BrickworkError(f"{folder} holds no safetensors weights{found}")
    for path in files:
        try:
            with safe_open(str(path), "pt"):  # checks the header covers the whole file
                pass
        except Exception as exc:  # safetensors raises several types for a damaged file
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise BrickworkError(f"{path} is damaged or truncated: {reason}") from None


def _load_gguf(path: Path, root: Path, source: str, place=None) -> LoadedModel:
    cached = _gguf_cache_dir(path, root)
    if (cached / "config.json").is_file() and not _cache_intact(cached):
        print(f"warning: damaged model cache {cached}: re-creating it", file=sys.stderr)
    elif (cached / "config.json").is_file():
        return _load_hf(str(cached), trust_remote_code=False, source=source, place=place)
    model, tokenizer = _dequantize(path)
    try:
        _write_cache(cached, model, tokenizer)
    except OSError as exc:  # a read-only, full or non-directory cache: go on without it
        print(
            f"warning: cannot cache the dequantized model in {root} ({exc}); not cached",
            file=sys.stderr,
        )
        with tempfile.TemporaryDirectory() as tmp:
            _save_with_checksums(Path(tmp), model, tokenizer)
            loaded = _load_hf(tmp, trust_remote_code=False, source=source, place=place)
            loaded.hf_location = None  # the directory is gone
            return loaded
    return _load_hf(str(cached), trust_remote_code=False, source=source, place=place)


def _cache_intact(folder: Path) -> bool:
    """Whether every file of a cached model matches the checksums written with it."""
    try:
        sums = json.loads((folder / CACHE_CHECKSUMS).read_text(encoding="utf-8"))
        names = {p.name for p in folder.iterdir()} - {CACHE_CHECKSUMS}
        return set(sums) == names and all(sha256_file(folder / n) == d for n, d in sums.items())
    except (OSError, ValueError, TypeError, AttributeError):
        return False


def _gguf_cache_dir(path: Path, root: Path) -> Path:
    stat = path.resolve().stat()
    key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return root / "models" / f"{path.stem}-{key.hexdigest()[:12]}"


def _dequantize(path: Path):
    """The model and tokenizer of a GGUF file, dequantized to float32."""
    try:
        kwargs = {"gguf_file": path.name, "dtype": torch.float32}
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except Exception as exc:  # gguf raises many types for corrupt or foreign files
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BrickworkError(f"cannot load GGUF file {path}: {reason}") from None
    family_for(model.config)  # refuse unsupported families before caching anything
    # The weights are now plain float32: drop the GGUF quantization marker before saving.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    return model, tokenizer


def _write_cache(target: Path, model, tokenizer) -> None:
    """Save the dequantized model as a directory at ``target`` (atomically, with checksums)."""
    if target.parent.exists() and not target.parent.is_dir():
        raise NotADirectoryError(f"{target.parent} is not a directory")
    replace_dir_atomically(target, lambda tmp: _save_with_checksums(tmp, model, tokenizer))


def _save_with_checksums(folder: Path, model, tokenizer) -> None:
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    sums = {p.name: sha256_file(p) for p in sorted(folder.iterdir())}
    (folder / CACHE_CHECKSUMS).write_text(json.dumps(sums, indent=1), encoding="utf-8")


def fingerprint(model: torch.nn.Module) -> str:
    """A stable hash of the config (minus load-time keys) and of every weight's bytes, as
    float32 whatever dtype the model runs in (a float32 model hashes as it always did)."""
    config = {
        k: v
        for k, v in model.config.to_dict().items()
        if not k.startswith("_") and k not in _VOLATILE_CONFIG_KEYS
    }
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu()
        tensor = tensor.float() if tensor.is_floating_point() else tensor
        flat = tensor.contiguous().reshape(-1)
        digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}".encode())
        digest.update(flat.view(torch.uint8).numpy())
    return "sha256:" + digest.hexdigest()[:32]


def _finish(model, tokenizer, family: Family, source: str, weights: str) -> LoadedModel:
    model.eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(model, tokenizer, family, weights, source)
