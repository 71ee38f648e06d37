"""The brickwork command line: thin wrappers, each calling one public function.

Each module here holds one area's commands and a ``register(commands)`` that adds them. Options
come from the settings dataclasses (``cli/settings.py``) and the shared declarations in
``cli/options.py``.
"""

from __future__ import annotations

import argparse
import shlex
import sys

import brickwork
from brickwork.cli import analysis, bricks, combine, configure, estimate, grow, train, update
from brickwork.cli.options import Parser
from brickwork.cli.recipes import expand_recipe
from brickwork.errors import BrickworkError

COMMAND_MODULES = (analysis, bricks, train, configure, combine, grow, update, estimate)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="brickwork", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"brickwork {brickwork.__version__}")
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
    args.run(args)
    return 0
