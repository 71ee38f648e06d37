"""The generated command line: every --help shows every default, the defaults are the library's,
parsed options come back as settings, and bad syntax is one error line with exit 2."""

from __future__ import annotations

import argparse

import pytest

import brickwork
from brickwork.analysis import AnalysisSettings
from brickwork.bricks.train import (
    KnowledgeSettings,
    LoraSettings,
    train_knowledge_brick,
    train_task_brick,
)
from brickwork.cli import build_parser, main
from brickwork.cli.settings import keywords_from, settings_from, signature_defaults
from brickwork.cli.train import KNOWLEDGE_OPTIONS, LORA_OPTIONS
from brickwork.ops.grow.train import GrowTrainSettings
from brickwork.ops.update import EditSettings


def _commands(parser=None, path=()):
    """(command path, parser) for the top parser and every subcommand below it."""
    parser = parser or build_parser()
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))


COMMANDS = [path for path, _ in _commands()]


def test_every_command_is_reachable():
    expected = {
        ("bricks", a) for a in ("list", "show", "verify", "remove", "extract", "retrieve")
    } | {("edit", a) for a in ("eval", "apply", "rollback")}
    assert expected <= set(COMMANDS)
    assert {("train", "task"), ("grow", "train"), ("generate",), ("locate",)} <= set(COMMANDS)


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "brickwork")
def test_help_shows_every_default(path, capsys):
    assert main([*path, "--help"]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    parser = dict(_commands())[path]
    for action in parser._actions:
        if not action.option_strings or action.default is argparse.SUPPRESS:
            continue  # positionals, --help, --version
        assert action.help, f"{action.option_strings[0]} has no help"
        if not action.required:
            assert f"(default: {action.default})" in shown, action.option_strings


def _parse(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


# (command line with only the required options, settings class, library defaults)
SETTINGS = [
    (["analyze", "--out", "o"], AnalysisSettings, AnalysisSettings()),
    (["grow", "train", "--data", "d", "--out", "o"], GrowTrainSettings, GrowTrainSettings()),
    (["edit"], EditSettings, EditSettings()),
    (["edit", "eval"], EditSettings, EditSettings()),
]


@pytest.mark.parametrize(("argv", "cls", "library"), SETTINGS, ids=lambda x: str(x))
def test_cli_defaults_are_the_library_defaults(argv, cls, library):
    args = _parse(argv)
    overrides = {}
    if cls is AnalysisSettings:  # --selection per-layer|global stands for per_layer
        overrides["per_layer"] = args.selection == "per-layer"
    assert settings_from(args, cls, **overrides) == library


@pytest.mark.parametrize(
    ("kind", "settings", "trainer", "extra"),
    [
        ("task", LoraSettings, train_task_brick, ()),
        ("knowledge", KnowledgeSettings, train_knowledge_brick, KNOWLEDGE_OPTIONS),
    ],
)
def test_train_defaults_are_the_trainers(kind, settings, trainer, extra):
    args = _parse(["train", kind, "--name", "n", "--purpose", "p", "--data", "d"])
    assert settings_from(args, settings) == signature_defaults(trainer)["settings"] == settings()
    given = keywords_from(args, extra)
    defaults = signature_defaults(trainer)
    assert given == {name: defaults[name] for name in given}
    assert {name for name in LORA_OPTIONS if name in args} == set(LORA_OPTIONS)


def test_knowledge_and_task_bricks_train_the_same_steps_by_default():
    # The CLI gave knowledge bricks 200 steps and Python 150; the measured results used 200.
    assert KnowledgeSettings().steps == LoraSettings().steps == 200


def test_keyword_options_default_as_their_functions():
    from brickwork.configure.pipeline import configured_generate
    from brickwork.ops.combine import merge_dare
    from brickwork.ops.grow import grow_experts, grow_width
    from brickwork.ops.retrieval import retrieve
    from brickwork.ops.update import knowledge_neurons

    WIDTH, MOE = ("method", "seed"), ("mode", "top_k")  # noqa: N806
    cases = [
        (["generate", "x"], configured_generate, ("configure", "budget", "selection")),
        (["bricks", "retrieve", "x"], retrieve, ("k", "scoring")),
        (["grow", "width", "--layers", "0", "--neurons", "1", "--out", "o"], grow_width, WIDTH),
        (["grow", "experts", "--layers", "0", "--experts", "2", "--out", "o"], grow_experts, MOE),
        (["combine", "dare", "--bricks", "a", "--name", "n"], merge_dare, ("seed", "variant")),
    ]
    for argv, function, names in cases:
        args, defaults = _parse(argv), signature_defaults(function)
        for name in names:
            assert getattr(args, name) == defaults[name], (argv, name)
    locate = _parse(["locate", "--fact", "f", "--answer", "a"])
    assert locate.ig_steps == signature_defaults(knowledge_neurons)["steps"]
    combine = _parse(["combine", "ties", "--bricks", "a", "--name", "n"])
    assert combine.density is None  # each method keeps its own default (ties 0.2, dare 0.5)


def test_parsed_options_come_back_as_settings():
    args = _parse(
        [
            *("edit", "eval", "--layer", "3", "--first-token-key", "--mode", "memit"),
            *("--covariance-tokens", "50", "--seed", "7"),
        ]
    )
    wanted = EditSettings(layer=3, first_token_key=True, mode="memit", covariance_tokens=50, seed=7)
    assert settings_from(args, EditSettings) == wanted
    args = _parse(["analyze", "--out", "o", "--cett-targets", "0.1,0.3", "--selection", "global"])
    settings = settings_from(args, AnalysisSettings, per_layer=args.selection == "per-layer")
    assert settings.cett_targets == (0.1, 0.3) and settings.per_layer is False
    args = _parse(["train", "task", "--name", "n", "--purpose", "p", "--data", "d"])
    assert keywords_from(args, ["max_seconds"]) == {"max_seconds": None}
    extract = _parse(["bricks", "extract", "--analysis", "a", "--methods", "coactivation"])
    assert extract.methods == ("coactivation",) and extract.groups == 16


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bricks"], "brickwork bricks: the following arguments are required: ACTION"),
        (["bricks", "list", "--nope"], "brickwork: unrecognized arguments: --nope"),
        (["edit", "eval", "--mode", "soft"], "argument --mode: invalid choice: 'soft'"),
        (["analyze", "--out", "o", "--cett-targets", "0.1,x"], "comma-separated float values"),
        (["bricks", "extract", "--analysis", "a", "--methods", "k"], "'k' is not one of"),
        (["grow", "width", "--layers", "a", "--neurons", "1", "--out", "o"], "comma-separated"),
    ],
)
def test_bad_syntax_is_one_error_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert captured.out == ""


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"brickwork {brickwork.__version__}"


def test_a_subclass_that_changes_a_default_keeps_the_help():
    from dataclasses import dataclass, field

    from brickwork.cli.options import Parser
    from brickwork.cli.settings import add_settings

    @dataclass(frozen=True)
    class Base:
        steps: int = field(default=200, metadata={"help": "training steps"})
        ratio: tuple[float, ...] = field(default=(0.5,), metadata={"help": "ratios"})

    @dataclass(frozen=True)
    class Shorter(Base):
        steps: int = 150

    parser = Parser(prog="x")
    add_settings(parser, Shorter)
    shown = " ".join(parser.format_help().split())
    assert "--steps N training steps (default: 150)" in shown
    assert settings_from(parser.parse_args(["--ratio", "0.1,0.2"]), Shorter) == Shorter(
        ratio=(0.1, 0.2)
    )


MODEL_COMMANDS = [
    ("profile",),
    ("analyze",),
    ("bricks", "extract"),
    ("bricks", "retrieve"),
    ("train", "task"),
    ("train", "knowledge"),
    ("train", "steer"),
    ("train-router",),
    ("generate",),
    ("describe",),
    ("stitch",),
    ("grow", "width"),
    ("grow", "depth"),
    ("grow", "experts"),
    ("grow", "train"),
    ("locate",),
    ("edit",),
    ("edit", "eval"),
    ("edit", "apply"),
    ("edit", "rollback"),
]


def test_every_command_that_loads_a_model_takes_the_same_model_options():
    parsers = dict(_commands())
    seen = set()
    for path in MODEL_COMMANDS:
        options = parsers[path]._option_string_actions
        assert "--model" in options and "--trust-remote-code" in options, path
        seen.add(options["--trust-remote-code"].help)
    assert len(seen) == 1  # declared once, in cli/options.py
