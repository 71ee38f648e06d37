"""Device and dtype at load time: resolution, one-line errors, and a fingerprint that does not
depend on the dtype a model runs in."""

import pytest
import torch

from brickwork import BrickworkError, load_model
from brickwork.cli import main
from brickwork.models.device import placement, resolve_device, resolve_dtype
from brickwork.models.estimate import estimate_memory, model_config, parameter_count

CUDA = torch.cuda.is_available()


def test_auto_is_cpu_and_float32_without_a_gpu():
    if CUDA:
        pytest.skip("a GPU is present")
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16


def test_library_default_is_cpu_float32_unless_the_environment_says(monkeypatch):
    monkeypatch.delenv("BRICKWORK_DEVICE", raising=False)
    monkeypatch.delenv("BRICKWORK_DTYPE", raising=False)
    assert placement() == (torch.device("cpu"), torch.float32, None)
    monkeypatch.setenv("BRICKWORK_DTYPE", "bfloat16")
    assert placement().dtype == torch.bfloat16


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: resolve_device("gpu"), "unknown device 'gpu'"),
        (lambda: resolve_dtype("float8", torch.device("cpu")), "unknown dtype 'float8'"),
        (lambda: placement(device_map="balanced"), "unknown device map"),
    ],
)
def test_bad_names_are_one_clear_error(call, message):
    with pytest.raises(BrickworkError, match=message):
        call()


@pytest.mark.skipif(CUDA, reason="a GPU is present")
def test_cuda_without_a_gpu_is_refused(tiny_model_dirs, capsys):
    with pytest.raises(BrickworkError, match="no CUDA GPU"):
        load_model(tiny_model_dirs["llama"], device="cuda")
    assert main(["profile", "--model", "x", "--out", "y", "--device", "cuda:0"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "no CUDA GPU is available" in error


def test_bad_dtype_on_the_command_line(capsys):
    assert main(["analyze", "--model", "x", "--out", "y", "--dtype", "float8"]) == 2
    assert "invalid choice: 'float8'" in capsys.readouterr().err


def test_unsupported_cpu_half_precision_is_refused(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("\"addmm_impl_cpu_\" not implemented for 'Half'")

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", broken)
    with pytest.raises(BrickworkError, match="float16 is not supported on CPU"):
        resolve_dtype("float16", torch.device("cpu"))


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_fingerprint_is_that_of_the_float32_weights(tiny_model_dirs, tiny_llama, dtype):
    low = load_model(tiny_model_dirs["llama"], dtype=dtype)
    assert {p.dtype for p in low.model.parameters()} == {getattr(torch, dtype)}
    assert low.fingerprint == tiny_llama.fingerprint
    assert low.model.lm_head.weight is low.model.model.embed_tokens.weight or not (
        low.model.config.tie_word_embeddings
    )
    assert low.device == torch.device("cpu")


@pytest.mark.parametrize("family", ["llama", "gemma3_text", "gpt2"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_estimate_counts_the_real_parameter_bytes(tiny_model_dirs, family, dtype):
    config = model_config(tiny_model_dirs[family])
    loaded = load_model(tiny_model_dirs[family], dtype=str(dtype).removeprefix("torch."))
    real = sum(p.numel() * p.element_size() for p in loaded.model.parameters())
    parts = estimate_memory(config, dtype, batch_size=2, seq_len=16, instances=12)
    assert parameter_count(config) * dtype.itemsize == real == parts["weights"]
    assert parts["profile_statistics"] >= 12 * 2 * 64 * 4  # instance means, [N, L, d_ff] float32
    assert parts["analysis_total"] > parts["weights"]


def test_estimate_command_prints_and_refuses_what_will_not_fit(tiny_model_dirs, capsys):
    path = tiny_model_dirs["llama"]
    assert main(["estimate", "--model", path, "--device", "cpu"]) == 0
    assert "weights" in capsys.readouterr().out
    huge = ["--batch-size", "100000", "--seq-len", "100000"]
    assert main(["estimate", "--model", path, "--device", "cpu", *huge]) == 2
    assert "needs about" in capsys.readouterr().err
