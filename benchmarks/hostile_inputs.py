"""Bad-input cases of ``benchmarks/hostile.py`` (issue 21, classes 5-7, 10): inputs that gave
tracebacks, bad inputs that were accepted, checks that came after the expensive work, a long
instruction. Placeholders as in ``hostile_faults``."""

from __future__ import annotations

import shutil

from hostile_checks import (
    ANALYZE,
    COMBINE,
    EDIT,
    GEN,
    GROW,
    KNOW,
    LOCATE,
    PROFILE,
    STEER,
    TASK,
    Case,
    M,
    R,
    absent,
    both,
    brick_json,
    full,
    no_leftovers,
    not_about,
    place,
    says,
    strict_json,
)

NOWEIGHTS = ["--model", "{fx}/noweights"]  # a model that fails to load: a check before it wins


def _lock_dir(w):
    (w / "repo" / ".lock").unlink(missing_ok=True)
    (w / "repo" / ".lock").mkdir()


def _no_bricks_dir(w):
    shutil.rmtree(w / "repo" / "bricks")


def _e(cls, name, argv, **kw) -> Case:
    return Case(cls, name, argv, **kw)


def traceback_cases() -> list[Case]:
    """5: the inputs that gave tracebacks."""
    lat = "{fx}/latin1.jsonl"
    cases = [
        _e(5, "profile non-UTF-8 data", [*PROFILE[:3], "--data", lat, "--out", "{w}/p"]),
        _e(5, "analyze non-UTF-8 data", [*ANALYZE[:3], "--data", lat, "--out", "{w}/a"]),
        _e(5, "train task non-UTF-8 data", [*TASK, "--name", "t", "--data", lat]),
        _e(
            5, "train knowledge non-UTF-8 data", [*KNOW, "--name", "k", "--data", "{fx}/latin1.txt"]
        ),
        _e(
            5,
            "train steer non-UTF-8 prompts",
            [*STEER, "--name", "s", "--positive", "{fx}/latin1.txt"],
        ),
        _e(
            5,
            "describe non-UTF-8 prompts",
            ["describe", "task", *R, *M, "--prompts", "{fx}/latin1.txt", "--description", "d"],
        ),
        _e(5, "edit --facts non-UTF-8", [*EDIT[:3], *R, "--facts", lat]),
        _e(5, "train task data not JSON", [*TASK, "--name", "t", "--data", "{fx}/notjson.jsonl"]),
        _e(5, "train task empty data", [*TASK, "--name", "t", "--data", "{fx}/empty.jsonl"]),
        _e(5, "profile empty data", [*PROFILE[:3], "--data", "{fx}/empty.jsonl", "--out", "{w}/p"]),
        _e(5, "garbage --router", [*GEN[:2], *M, "--router", "{fx}/router.safetensors"]),
        _e(5, "generate --trace into a missing directory", [*GEN, "--trace", "{w}/no/t.json"]),
        _e(5, "generate --trace onto a directory", [*GEN, "--trace", "{w}"]),
        _e(5, "profile --out a file", [*PROFILE[:-1], "{fx}/a_file"]),
        _e(5, "analyze --out a file", [*ANALYZE[:-1], "{fx}/a_file"]),
        _e(5, "grow --out a file", [*GROW[:4], "{fx}/a_file", *GROW[5:]]),
        _e(5, "analyze --fraction 2", [*ANALYZE, "--fraction", "2"]),
        _e(5, "train steer --layers a,b", [*STEER[:-1], "a,b", "--name", "s"]),
        _e(5, "train steer --layers 99", [*STEER[:-1], "99", "--name", "s"]),
        _e(5, "steering brick too wide", [*GEN, "--plugin", "{fx}/steer-wide"]),
        _e(5, "steering brick at layer 999", [*GEN, "--plugin", "{fx}/steer-far"]),
        _e(5, "steering brick without vectors", [*GEN, "--plugin", "{fx}/steer-none"]),
        _e(
            5,
            "neuron-set mask of the wrong shape",
            [*GEN[:4], "coding", "--brick", "wrongmask", *R],
            setup=place("mask-wrong", "wrongmask"),
        ),
        _e(5, "--plugin not a brick", [*GEN, "--plugin", "{fx}/model"]),
        _e(5, "--plugin a missing path", [*GEN, "--plugin", "{w}/nothing"]),
        _e(
            5,
            "grown model with selection",
            ["generate", "hi", "--model", "{fx}/grown", "--configure", "coding"],
        ),
        Case(
            5,
            "grown model, dense",
            [
                "generate",
                "hi",
                "--model",
                "{fx}/grown",
                "--configure",
                "none",
                "--max-new-tokens",
                "2",
            ],
            "either",
        ),
    ]
    for label, model in (
        ("without weights", "noweights"),
        ("with only a .bin", "binonly"),
        ("with truncated weights", "truncated"),
        ("a file", "a_file"),
        ("missing", "nothing"),
    ):
        spec = ["--model", f"{{fx}}/{model}"]
        cases += [
            _e(5, f"generate, model {label}", [*GEN[:2], *spec]),
            _e(5, f"train task, model {label}", [*TASK, *spec, "--name", "t"]),
        ]
    cases += [
        _e(5, f"profile, model {label}", [*PROFILE, *spec])
        for label, spec in (
            ("without weights", NOWEIGHTS),
            ("truncated", ["--model", "{fx}/truncated"]),
        )
    ]
    for label, setup in ((".lock is a directory", _lock_dir), ("bricks/ deleted", _no_bricks_dir)):
        expect = "either" if "deleted" in label else "error"
        cases += [
            Case(5, f"{label}: remove", ["bricks", "remove", "cells", *R], expect, full(setup)),
            Case(5, f"{label}: train steer", [*STEER, "--name", "s"], expect, full(setup)),
            Case(5, f"{label}: combine", [*COMBINE, "--name", "m"], "error", full(setup)),
        ]
    for label, argv in (
        ("bricks list", ["bricks", "list"]),
        ("show", ["bricks", "show", "x"]),
        ("combine", COMBINE[:2] + ["--bricks", "a,b", "--name", "m"]),
        ("train steer", STEER[:-4] + M + ["--layers", "1", "--name", "s"]),
        ("edit", [*EDIT, "--name", "e"]),
        ("gc", ["bricks", "gc"]),
    ):
        cases.append(_e(5, f"--repo a file: {label}", [*argv, "--repo", "{fx}/a_file"]))
    full_disk = [  # a full disk: every write past 64 bytes fails
        ("train steer", [*STEER, "--name", "s"]),
        ("combine", [*COMBINE, "--name", "m"]),
        ("grow width", GROW),
        ("profile", PROFILE),
        ("edit --out", [*EDIT, *R, "--name", "e", "--out", "{w}/edited"]),
    ]
    cases += [
        Case(5, f"full disk: {label}", argv, fsize=64, check=no_leftovers)
        for label, argv in full_disk
    ]
    return cases


def _huge_metric(meta, folder):
    meta["metrics"] = {"loss": 1.0}
    return __import__("json").dumps(meta).replace('"loss": 1.0', '"loss": 1e999')


BAD_NAMES = ("s\n", " s", "a/b", "..", ".hidden", "x" * 300, "")
BOUNDS = {  # a command and the bad values of one option
    "generate": (
        GEN,
        {"--budget": ("0", "1.5", "nan"), "--temperature": ("-1",), "--top-p": ("0",)},
    ),
    "train task": (
        [*TASK, "--name", "t"],
        {"--steps": ("0",), "--lr": ("nan",), "--rank": ("0",), "--dropout": ("1.5",)},
    ),
    "combine": ([*COMBINE, "--name", "m"], {"--weights": ("1", "nan,1"), "--scale": ("nan",)}),
    "combine ties": (
        ["combine", "ties", *R, "--bricks", "task,task2", "--name", "m"],
        {"--density": ("0", "1.5")},
    ),
    "grow width": (GROW, {"--neurons": ("0",), "--layers": ("99", "x")}),
    "edit": ([*EDIT, *R, "--name", "e"], {"--layer": ("99",), "--steps": ("0",)}),
    "estimate": (["estimate", *M], {"--batch-size": ("0",), "--seq-len": ("-1",)}),
    "profile": (PROFILE, {"--shard": ("2/2",), "--batch-size": ("0",), "--max-tokens": ("0",)}),
    "analyze": (ANALYZE, {"--fraction": ("0", "nan"), "--cett-targets": ("1.5",)}),
    "locate": (LOCATE, {"--ig-steps": ("0",)}),
}


def accepted_cases() -> list[Case]:
    """6: bad inputs that were accepted or gave a silently wrong result."""
    cases = [
        _e(
            6,
            "combine LoRA ranks disagree",
            [*COMBINE[:-1], "task,badrank", "--name", "m"],
            setup=place("badrank", "badrank"),
        ),
        _e(6, "combine a missing brick", [*COMBINE[:-1], "task,nothere", "--name", "m"]),
        _e(6, "combine a brick twice", [*COMBINE[:-1], "task,task", "--name", "m"]),
        _e(6, "combine an empty list", [*COMBINE[:-1], ",", "--name", "m"]),
        _e(6, "combine a steering brick", [*COMBINE[:-1], "task,polite", "--name", "m"]),
        _e(6, "combine an existing name", [*COMBINE, "--name", "polite"]),
        Case(
            6,
            "show writes strict JSON (huge number)",
            ["bricks", "show", "cells", *R, "--json"],
            "ok",
            brick_json("cells", _huge_metric),
            strict_json,
        ),
        _e(6, "steering brick of NaN", [*GEN, "--plugin", "{fx}/steer-nan"]),
        _e(6, "train steer --scale nan", [*STEER, "--name", "s", "--scale", "nan"]),
        _e(6, "train steer --scale inf", [*STEER, "--name", "s", "--scale", "inf"]),
        _e(6, "edit eval --limit 0", ["edit", "eval", *M, "--limit", "0"]),
        _e(6, "edit eval --limit -1", ["edit", "eval", *M, "--limit", "-1"]),
        _e(6, "locate --answer ''", [*LOCATE[:-4], "--answer", "", "--method", "trace"]),
        _e(6, "locate --answer ' '", [*LOCATE[:-4], "--answer", " ", "--method", "trace"]),
        _e(6, "--configure unknown functionality", [*GEN[:4], "astrology"]),
        _e(6, "generate an empty instruction", ["generate", "", *M]),
        _e(6, "generate a blank instruction", ["generate", "  \n ", *M]),
        _e(6, "edit an empty --new", [*EDIT[:7], "--new", "", *R]),
        _e(6, "edit a subject not in the fact", [*EDIT[:5], "Berlin", *EDIT[7:], *R]),
        _e(6, "train task --purpose ''", [*TASK[:3], "", *TASK[4:], "--name", "t"]),
        _e(6, "unknown option", ["bricks", "list", *R, "--colour"]),
        _e(
            6,
            "BRICKWORK_LOCK_TIMEOUT=abc",
            ["bricks", "remove", "cells", *R],
            env={"BRICKWORK_LOCK_TIMEOUT": "abc"},
        ),
        _e(
            6,
            "BRICKWORK_LOCK_TIMEOUT=-1",
            ["bricks", "remove", "cells", *R],
            env={"BRICKWORK_LOCK_TIMEOUT": "-1"},
        ),
    ]
    for name in BAD_NAMES:
        cases += [
            _e(6, f"train steer --name {name[:12]!r}", [*STEER, "--name", name]),
            _e(6, f"bricks show {name[:12]!r}", ["bricks", "show", name, *R]),
        ]
    cases.append(_e(6, "combine --name 'm\\n'", [*COMBINE, "--name", "m\n"]))
    for command, (argv, options) in BOUNDS.items():
        for option, values in options.items():
            cases += [_e(6, f"{command} {option} {v!r}", [*argv, option, v]) for v in values]
    return cases


def late_check_cases() -> list[Case]:
    """7: inputs checked before the model loads (the model given here cannot load, so an error
    about the input, not the model, shows the input was checked first)."""
    late = not_about("noweights")
    edit = [*EDIT[:1], *NOWEIGHTS, *EDIT[3:]]
    cases = [
        _e(7, "edit --out an existing directory", [*edit, *R, "--name", "e", "--out", "{w}"]),
        _e(7, "edit --out a file", [*edit, *R, "--name", "e", "--out", "{fx}/a_file"]),
        _e(7, "edit --name existing", [*edit, *R, "--name", "fr"]),
        _e(7, "edit --name invalid", [*edit, *R, "--name", "a/b"]),
        _e(7, "edit without --repo", edit),
        _e(7, "train steer --name existing", [*STEER, *NOWEIGHTS, "--name", "polite"]),
        _e(7, "train task --name existing", [*TASK, *NOWEIGHTS, "--name", "task"]),
        _e(7, "train knowledge --name existing", [*KNOW, *NOWEIGHTS, "--name", "task"]),
        _e(
            7,
            "train task into a .lock-directory repo",
            [*TASK, *NOWEIGHTS, "--name", "t"],
            setup=full(_lock_dir),
        ),
        _e(
            7,
            "train task --repo a file",
            [*TASK, *NOWEIGHTS, "--name", "t", "--repo", "{fx}/a_file"],
        ),
        _e(7, "generate --budget 2", [*GEN, *NOWEIGHTS, "--budget", "2"]),
        _e(7, "generate --configure unknown", [*GEN[:2], *NOWEIGHTS, "--configure", "astro"]),
        _e(7, "generate --brick missing", [*GEN, *NOWEIGHTS, "--brick", "nothere", *R]),
        _e(7, "grow --out a file", [*GROW[:2], *NOWEIGHTS, "--out", "{fx}/a_file", *GROW[5:]]),
        _e(7, "profile --out a file", [*PROFILE[:-1], "{fx}/a_file", *NOWEIGHTS]),
        _e(
            7,
            "locate --name existing",
            [*LOCATE, *NOWEIGHTS, *R, "--name", "fr"],
            setup=place("steer-far", "fr-trace"),
        ),
        _e(
            7,
            "bricks extract without analysis",
            ["bricks", "extract", "--analysis", "{w}/no", "--repo", "{w}/new"],
            check=absent("new"),
        ),
        _e(
            7,
            "configure build --budget 2",
            [
                "configure",
                "build",
                "--functionality",
                "coding",
                "--budget",
                "2",
                "--analysis",
                "{w}/no",
                "--out",
                "{w}/c",
                *NOWEIGHTS,
            ],
            check=absent("c"),
        ),
    ]
    for case in cases:
        case.check = both(late, case.check) if case.check else late
    return cases


def long_input_cases() -> list[Case]:
    """10: an instruction longer than the prompt window is cut, and says so."""
    long = "please answer " * 120
    cut = says("warning")
    return [
        Case(10, "long instruction, chat", ["generate", long, *GEN[2:]], "ok", None, cut),
        Case(
            10,
            "long instruction, --no-chat",
            ["generate", long, *GEN[2:], "--no-chat"],
            "ok",
            None,
            cut,
        ),
    ]
