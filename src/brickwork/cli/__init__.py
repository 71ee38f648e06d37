"""The brickwork command line: thin wrappers, each calling one public function.

Each module here holds one area's commands and a ``register(commands)`` that adds them.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from brickwork.cli import analysis, bricks, combine, configure, grow, update
from brickwork.errors import BrickworkError

COMMAND_MODULES = (analysis, bricks, configure, combine, grow, update)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="brickwork", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        module.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.command_line = shlex.join(["brickwork", *argv])  # recorded in every output
    try:
        args.run(args)
    except BrickworkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
