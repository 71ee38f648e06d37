"""The parser class and the options many commands share, each declared once here."""

from __future__ import annotations

import argparse

from brickwork.errors import BrickworkError


class UsageError(BrickworkError):
    """Bad command-line syntax: one ``error:`` line and exit 2, as for any other bad input."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every option's default, except on required options (they have none)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.required:
            return action.help or ""
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors raise ``UsageError`` instead of exiting."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def add_model(
    command: argparse.ArgumentParser, help: str = "the base model", *, default: object = ...
) -> None:
    """The model options of every command that loads a model (default: the default model)."""
    command.add_argument(
        "--model",
        default=_default_model() if default is ... else default,
        help=f"{help}: built-in name, HF model directory, .gguf file or Hub id",
    )
    command.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="let transformers run the model repository's own code",
    )
    command.add_argument(
        "--device", default="auto", type=_device, help="auto (CUDA when present), cpu, cuda, cuda:N"
    )
    command.add_argument(
        "--dtype",
        default="auto",
        choices=("auto", "float32", "bfloat16", "float16"),
        help="weights' precision; auto: bfloat16 on a GPU, float32 on a CPU",
    )
    command.add_argument(
        "--device-map",
        default=None,
        choices=("auto",),
        help="auto: spread a model too large for one device over all GPUs (accelerate)",
    )


def model_options(args: argparse.Namespace) -> dict:
    """The keyword arguments of ``load_model`` that ``add_model``'s options give."""
    names = ("trust_remote_code", "device", "dtype", "device_map")
    return {name: getattr(args, name) for name in names}


def _device(text: str) -> str:
    from brickwork.models.device import resolve_device

    try:
        resolve_device(text)
    except BrickworkError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_data(command: argparse.ArgumentParser, help: str = "") -> None:
    from brickwork.data import BUILTIN_DATA, INFINITY_DATA

    command.add_argument(
        "--data",
        default=BUILTIN_DATA,
        help=f"{BUILTIN_DATA!r}, {INFINITY_DATA!r} or a JSONL file{help}",
    )


def add_repo(
    command: argparse.ArgumentParser, help: str = "the brick repository", default="bricks"
) -> None:
    command.add_argument("--repo", default=default, required=default is None, help=help)


def add_optional_repo(command: argparse.ArgumentParser, help: str) -> None:
    command.add_argument("--repo", default=None, help=help)


def add_out(command: argparse.ArgumentParser, help: str, *, required: bool = True) -> None:
    command.add_argument("--out", required=required, default=None, help=help)


def add_repeatable(command: argparse.ArgumentParser, flag: str, help: str) -> None:
    """An option that may be given several times; its values as a list (empty when absent)."""
    command.add_argument(flag, action="append", default=[], help=help)


def add_quiet(command: argparse.ArgumentParser) -> None:
    command.add_argument("--quiet", action="store_true", help="no progress bars")


def add_overwrite(command: argparse.ArgumentParser, help: str = "replace a brick of that name"):
    command.add_argument("--overwrite", action="store_true", help=help)


def positive_int(text: str) -> int:
    """An integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def batch_size_or_auto(text: str) -> int | str:
    """A batch size of at least 1, or ``auto``."""
    return "auto" if text == "auto" else positive_int(text)


def allow_auto_batch_size(command: argparse.ArgumentParser) -> None:
    """Let the command's ``--batch-size`` also take ``auto`` (see ``resolve_batch_size``)."""
    action = command._option_string_actions["--batch-size"]
    action.type, action.metavar = batch_size_or_auto, "N|auto"
    action.help += "; auto: the largest that fits the device's free memory"


def resolve_batch_size(
    args: argparse.Namespace, loaded, seq_len: int, *, training: bool = False, reserved: int = 0
) -> None:
    """Replace ``--batch-size auto`` by the largest batch that fits the loaded model's device
    (``models.estimate.auto_batch_size``) and print it. Under torchrun every rank takes the
    smallest rank's choice; a training batch is the global one, so it is that times the ranks."""
    if args.batch_size != "auto":
        return
    import torch.distributed as dist

    from brickwork.models.estimate import GIB, auto_batch_size

    dtype = next(loaded.model.parameters()).dtype
    size, free, per_prompt = auto_batch_size(
        loaded.model.config, dtype, loaded.device, seq_len, training=training, reserved=reserved
    )
    ranks = dist.get_world_size() if dist.is_initialized() else 1
    if ranks > 1:
        smallest = smallest_over_ranks(size)
        size = smallest * (ranks if training else 1)
    args.batch_size = size
    if not dist.is_initialized() or dist.get_rank() == 0:
        print(
            f"--batch-size auto: {size} ({free / GIB:.1f} GiB free on {loaded.device}, "
            f"at most {per_prompt / 2**20:.0f} MiB per prompt of {seq_len} tokens)"
        )


def smallest_over_ranks(value: int) -> int:
    """The smallest of every rank's ``value`` (torch.distributed must be initialized)."""
    import torch
    import torch.distributed as dist

    tensor = torch.tensor([value])
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return int(tensor)


def nonblank(text: str) -> str:
    """A text that is not empty or only spaces."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def indices(text: str) -> list[int]:
    """Comma-separated integers, e.g. layer indices ``0,5,10``."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def _default_model() -> str:
    from brickwork.models import DEFAULT_MODEL

    return DEFAULT_MODEL


def record_invocation(provenance: dict, args: argparse.Namespace) -> None:
    """The command line, and the recipe file's options when one was given, in ``provenance``."""
    provenance["command"] = args.command_line
    if getattr(args, "recipe", None):
        provenance["recipe"] = args.recipe
