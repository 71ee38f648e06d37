"""Recipe files, as mergekit's: ``brickwork combine recipe.yaml`` or ``brickwork train task
recipe.yaml`` reads the command's options from a YAML (or JSON) mapping, keyed by option name
(``batch_size`` or ``batch-size``; positional arguments by their name). Flags given on the
command line after the recipe override it. The recipe is stored in the provenance of what the
command saves."""

from __future__ import annotations

import argparse
from pathlib import Path

from brickwork.errors import BrickworkError

SUFFIXES = (".yaml", ".yml", ".json")


def expand_recipe(
    parser: argparse.ArgumentParser, argv: list[str]
) -> tuple[list[str], dict | None]:
    """``argv`` with a recipe file's options spelled out in its place, and the recipe."""
    at = next((i for i, token in enumerate(argv) if _is_recipe(argv, i)), None)
    if at is None:
        return argv, None
    recipe = load_recipe(argv[at])
    command, rest = argv[:at], argv[at + 1 :]
    actions = _subparser(parser, command)._actions
    by_dest = {a.dest: a for a in actions if a.dest != "help"}
    unknown = sorted(set(recipe) - set(by_dest))
    if unknown:
        raise BrickworkError(
            f"{argv[at]}: unknown options {', '.join(unknown)}; known: {', '.join(sorted(by_dest))}"
        )
    positional, optional = [], []
    for dest, value in recipe.items():
        action = by_dest[dest]
        if not action.option_strings:
            positional.append(_text(value))
        else:
            optional += _flags(action, value)
    return [*command, *positional, *optional, *rest], recipe


def load_recipe(path: str) -> dict:
    import yaml

    try:
        recipe = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise BrickworkError(f"cannot read the recipe {path}: {exc}") from None
    if not isinstance(recipe, dict) or not all(isinstance(k, str) for k in recipe):
        raise BrickworkError(f"the recipe {path} must be a mapping of option names to values")
    return {key.replace("-", "_"): value for key, value in recipe.items()}


def _is_recipe(argv: list[str], i: int) -> bool:
    token = argv[i]
    after_flag = i > 0 and argv[i - 1].startswith("-")
    return token.endswith(SUFFIXES) and not after_flag and Path(token).is_file()


def _subparser(parser: argparse.ArgumentParser, command: list[str]) -> argparse.ArgumentParser:
    for word in command:
        choices = next(
            (a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None
        )
        if not choices or word not in choices:
            raise BrickworkError(
                f"a recipe file follows a command, e.g. `brickwork combine {word}`"
            )
        parser = choices[word]
    return parser


def _text(value) -> str:
    if isinstance(value, list | tuple):
        return ",".join(_text(v) for v in value)
    return str(value)


def _flags(action: argparse.Action, value) -> list[str]:
    flag = action.option_strings[-1]
    if isinstance(action, argparse.BooleanOptionalAction):
        return [flag if value else "--no-" + flag.removeprefix("--")]
    if isinstance(action, argparse._StoreTrueAction):
        return [flag] if value else []
    if isinstance(action, argparse._AppendAction):
        values = value if isinstance(value, list) else [value]
        return [token for v in values for token in (flag, _text(v))]
    return [flag, _text(value)]
