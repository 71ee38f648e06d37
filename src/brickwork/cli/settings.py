"""Command-line options generated from settings dataclasses, the only source of defaults and help.

``add_settings(parser, Settings)`` adds one option per field: ``--field-name`` typed from the
annotation (``bool`` gives ``--x/--no-x``, ``tuple[float, ...]`` a comma-separated list, ``X |
None`` an optional ``X``), its default from the field and its help, choices and numeric bounds
(``above``, ``minimum``, ``maximum``) from the field's ``metadata``. ``settings_from(args,
Settings)`` builds the dataclass back from the parsed namespace. ``add_keywords`` does the same
for a function's keyword parameters, for operations with only a few knobs: their defaults stay
in the function's signature.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Iterable

MISSING = dataclasses.MISSING


def add_settings(
    parser: argparse.ArgumentParser,
    settings: type,
    *,
    only: Iterable[str] | None = None,
    skip: Iterable[str] = (),
    defaults: dict | None = None,
) -> None:
    """One option per field of the dataclass ``settings`` (``only`` these, none of ``skip``).

    ``defaults`` replaces a field's default where a library function defaults otherwise. A field
    whose option the parser already has (a shared one such as ``--seed``) is not added again.
    """
    hints = typing.get_type_hints(settings)
    chosen = set(only) if only is not None else None
    for field in dataclasses.fields(settings):
        if field.name in skip or (chosen is not None and field.name not in chosen):
            continue
        default = field.default
        if default is MISSING and field.default_factory is not MISSING:
            default = field.default_factory()
        default = (defaults or {}).get(field.name, default)
        _add(parser, _flag(field.name), hints[field.name], default, _metadata(settings, field))


def _metadata(settings: type, field: dataclasses.Field) -> dict:
    """The field's metadata; a subclass that only changes a default keeps its base's help."""
    for cls in settings.__mro__:
        for base_field in getattr(cls, "__dataclass_fields__", {}).values():
            if base_field.name == field.name and base_field.metadata:
                return dict(base_field.metadata)
    return {}


def settings_from(args: argparse.Namespace, settings: type, **overrides):
    """The dataclass ``settings`` from parsed options; fields not on the command line keep their
    defaults, ``overrides`` win over both."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(settings) if f.name in args}
    return settings(**{**values, **overrides})


def add_keywords(
    parser: argparse.ArgumentParser,
    function: Callable,
    helps: dict[str, str],
    *,
    flags: dict[str, str] | None = None,
    choices: dict[str, Iterable] | None = None,
) -> None:
    """An option for each parameter named in ``helps``, with ``function``'s default and type.

    ``flags`` renames an option (parameter -> flag, e.g. ``{"n_groups": "--groups"}``); the value
    lands under the flag's name. ``keywords_from`` gives the function's keyword arguments back.
    """
    hints = typing.get_type_hints(function)
    parameters = inspect.signature(function).parameters
    for name, text in helps.items():
        metadata = {"help": text, "choices": (choices or {}).get(name)}
        default = parameters[name].default
        _add(parser, _flag(name, flags), hints[name], default, metadata)


def keywords_from(args: argparse.Namespace, names: Iterable[str], flags: dict | None = None):
    """``{parameter: value}`` for the parameters ``add_keywords`` made options of."""
    return {name: getattr(args, _dest(_flag(name, flags))) for name in names}


def signature_defaults(function: Callable) -> dict:
    """The defaults of a function's parameters, by name."""
    parameters = inspect.signature(function).parameters.values()
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}


def signature_default(function: Callable, name: str):
    return signature_defaults(function)[name]


def _flag(name: str, flags: dict | None = None) -> str:
    return (flags or {}).get(name) or "--" + name.replace("_", "-")


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _add(parser, flag: str, hint, default, metadata: dict) -> None:
    if flag in parser._option_string_actions:  # a shared option, declared once
        return
    if default is MISSING or default is inspect.Parameter.empty:
        raise TypeError(f"option {flag} has no default: the command line needs one")
    help = metadata.get("help") or _dest(flag).replace("_", " ")
    options = {"dest": _dest(flag), "default": default, "help": help}
    base, choices = _unwrap(hint), metadata.get("choices")
    if base is bool:
        options["action"] = argparse.BooleanOptionalAction
    elif typing.get_origin(base) in (tuple, list):
        options["type"] = _comma_list(base, choices, metadata)
        options["metavar"] = ",".join(choices) if choices else "A,B,..."
    else:
        options["type"] = _bounded(_parser_for(base, flag), metadata)
        if choices:
            options["choices"] = tuple(choices)
        else:
            options["metavar"] = {int: "N", float: "X"}.get(base, "TEXT")
    parser.add_argument(flag, **options)


def _unwrap(hint):
    """The type without ``None``; of ``str | list[str]`` and the like, the first, plain form."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def _parser_for(base, flag: str) -> Callable[[str], object]:
    if base in (int, float, str):
        return base
    raise TypeError(f"option {flag}: no command-line form for type {base!r}")


def _bounded(parse: Callable[[str], object], metadata: dict) -> Callable[[str], object]:
    """``parse`` refusing values outside the field's ``above`` (exclusive) and ``minimum`` /
    ``maximum`` (inclusive) bounds, where its metadata gives them."""
    bounds = {k: metadata[k] for k in ("above", "minimum", "maximum") if k in metadata}
    if not bounds:
        return parse

    def checked(text: str):
        value = parse(text)
        low, high = bounds.get("above"), bounds.get("maximum")
        if (low is not None and not value > low) or (high is not None and not value <= high):
            raise argparse.ArgumentTypeError(f"must be in ({low}, {high}], not {text}")
        if "minimum" in bounds and not value >= bounds["minimum"]:
            raise argparse.ArgumentTypeError(f"must be at least {bounds['minimum']}, not {text}")
        return value

    checked.__name__ = getattr(parse, "__name__", "value")  # argparse names it in errors
    return checked


def _comma_list(hint, choices: Iterable | None, metadata: dict) -> Callable[[str], object]:
    """A parser of comma-separated items of the list or tuple type ``hint`` (each within the
    field's bounds, as ``_bounded`` checks them)."""
    container, item = typing.get_origin(hint), typing.get_args(hint)[0]
    item = _bounded(item, metadata)

    def parse(text: str):
        try:
            values = container(item(part.strip()) for part in text.split(",") if part.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {item.__name__} values, got {text!r}"
            ) from None
        wrong = [v for v in values if choices and v not in choices]
        if wrong:
            raise argparse.ArgumentTypeError(f"{wrong[0]!r} is not one of {tuple(choices)}")
        return values

    return parse
