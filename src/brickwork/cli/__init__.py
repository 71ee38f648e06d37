"""The brickwork command line: thin wrappers, each calling one public function.

Each module here holds one area's commands and a ``register(commands)`` that adds them. Options
come from the settings dataclasses (``cli/settings.py``) and the shared declarations in
``cli/options.py``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from contextlib import contextmanager, nullcontext

import brickwork
from brickwork.cli import analysis, bricks, combine, configure, estimate, grow, train, update
from brickwork.cli.options import Parser
from brickwork.cli.recipes import expand_recipe
from brickwork.errors import BrickworkError

COMMAND_MODULES = (analysis, bricks, train, configure, combine, grow, update, estimate)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="brickwork", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"brickwork {brickwork.__version__}")
    parser.add_argument(
        "--verbose", action="store_true", help="show the libraries' warnings and loading bars"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        return _run(argv)
    except BrickworkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _run(argv: list[str]) -> int:
    parser = build_parser()
    expanded, recipe = expand_recipe(parser, argv)
    try:
        args = parser.parse_args(expanded)
    except SystemExit as exc:  # --help and --version print, then exit 0
        return int(exc.code or 0)
    args.command_line = shlex.join(["brickwork", *argv])  # recorded in every output
    args.recipe = recipe
    with nullcontext() if args.verbose else quiet_libraries():
        args.run(args)
    return 0


@contextmanager
def quiet_libraries():
    """Hide transformers' and other libraries' warnings (FutureWarning, deprecations, load
    reports) and loading bars; brickwork's own warnings print to stderr all the same."""
    import warnings

    from transformers.utils import logging

    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            for category in (FutureWarning, DeprecationWarning, UserWarning):
                warnings.filterwarnings("ignore", category=category)
            yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()
