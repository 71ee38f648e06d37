"""The case table of ``benchmarks/hostile.py``: every bad input and fault, by the classes of
issue 21. Placeholders: {m} the tiny model, {fx} the fixtures, {w} the case's work directory,
{repo} its copy of the prepared repository (bricks cells, task, task2, polite, fr)."""

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
    all_intact,
    both,
    brick_intact,
    brick_json,
    covariance_healed,
    damage_covariance,
    damage_model_cache,
    edited_model_differs,
    full,
    gone,
    killed,
    lock_held,
    model_cache_intact,
    no_leftovers,
    not_about,
    place,
    says,
    shared_modes,
    strict_json,
)

NOWEIGHTS = ["--model", "{fx}/noweights"]  # a model that fails to load: a check before it wins


def crash_cases() -> list[Case]:
    """1: a writer killed between the steps of an overwrite or removal, then the next command."""
    cases = []
    for step in range(3):  # target -> .old, tmp -> target, delete .old
        for name in ("cells",):
            intact = brick_intact(name, ("coding", "toy task", "newer"))
            setup = killed(step, "overwrite", name)
            tag = f"overwrite of {name} killed at step {step}"
            cases += [
                Case(1, f"{tag}, then show", ["bricks", "show", name, *R], "ok", setup, intact),
                Case(
                    1,
                    f"{tag}, then list",
                    ["bricks", "list", *R],
                    "ok",
                    setup,
                    both(says(name, "out"), intact),
                ),
                Case(
                    1,
                    f"{tag}, then verify",
                    ["bricks", "verify", *R],
                    "ok",
                    setup,
                    both(all_intact, intact),
                ),
                Case(
                    1,
                    f"{tag}, then remove",
                    ["bricks", "remove", name, *R],
                    "ok",
                    setup,
                    gone(name),
                ),
            ]
        setup = killed(step, "overwrite", "task")
        argv = [*COMBINE, "--name", "task", "--overwrite"]
        cases.append(
            Case(
                1,
                f"overwrite killed at step {step}, then overwrite again",
                argv,
                "ok",
                setup,
                both(brick_intact("task"), no_leftovers),
            )
        )
    for step in range(2):  # target -> .removed, delete .removed
        setup = killed(step, "remove", "cells")
        tag = f"remove killed at step {step}"
        cases += [
            Case(
                1,
                f"{tag}, then list",
                ["bricks", "list", *R],
                "ok",
                setup,
                both(says("polite", "out"), brick_intact("polite")),
            ),
            Case(
                1,
                f"{tag}, then remove again",
                ["bricks", "remove", "cells", *R],
                "either",
                setup,
                gone("cells"),
            ),
            Case(1, f"{tag}, then verify", ["bricks", "verify", *R], "ok", setup, all_intact),
        ]
    return cases


def _drop_weights(meta, folder):
    (folder / "weights.safetensors").unlink()
    del meta["files"]["weights.safetensors"]


def _set(key, value):
    def change(meta, folder):
        meta[key] = value

    return change


def _delete(key):
    def change(meta, folder):
        del meta[key]

    return change


def _files(value):
    def change(meta, folder):
        meta["files"] = value(meta["files"])

    return change


def _brick_json_dir(meta, folder):
    (folder / "brick.json").unlink()
    (folder / "brick.json").mkdir()
    return False


MALFORMED = {
    "purpose missing": _delete("purpose"),
    "kind missing": _delete("kind"),
    "kind a list": _set("kind", ["neuron_set"]),
    "kind unknown": _set("kind", "teleport"),
    "origin unknown": _set("origin", "alien"),
    "files a list": _files(list),
    "files missing": _delete("files"),
    "files {}": _files(lambda f: {}),
    "weights deleted and dropped from files": _drop_weights,
    "files key outside the brick": _files(lambda f: {**f, "../../repository.json": "0" * 64}),
    "files key absolute": _files(lambda f: {**f, "/etc/hostname": "0" * 64}),
    "files hash not a string": _files(lambda f: {k: 5 for k in f}),
    "weights hash changed": _files(lambda f: {k: "0" * 64 for k in f}),
    "name differs from its directory": _set("name", "other"),
    "name not a string": _set("name", 5),
    "base_model a number": _set("base_model", 42),
    "spec a list": _set("spec", [1]),
    "format_version 99": _set("format_version", 99),
    "not JSON": lambda meta, folder: "{not json",
    "empty file": lambda meta, folder: "",
    "a JSON list": lambda meta, folder: "[]",
    "brick.json a directory": _brick_json_dir,
}


def malformed_cases() -> list[Case]:
    """2: one bad brick.json: the rest of the repository stays usable, the bad one is refused."""
    cases = []
    for label, change in MALFORMED.items():
        setup = brick_json("cells", change)
        cases += [
            Case(2, f"{label}: list", ["bricks", "list", *R], "ok", setup, says("polite", "out")),
            Case(2, f"{label}: show it", ["bricks", "show", "cells", *R], "error", setup),
        ]
        if "files" in label or "weights" in label:  # verify hashes what files lists
            damaged = says("DAMAGED cells", "out")
            cases.append(
                Case(2, f"{label}: verify", ["bricks", "verify", *R], "error", setup, damaged)
            )
    setup = brick_json("cells", _set("kind", ["neuron_set"]))
    cases += [
        Case(2, "kind a list: show another", ["bricks", "show", "polite", *R], "ok", setup),
        Case(
            2,
            "kind a list: list --json",
            ["bricks", "list", *R, "--json"],
            "ok",
            setup,
            strict_json,
        ),
        Case(2, "kind a list: generate with another", [*GEN, "--brick", "polite", *R], "ok", setup),
        Case(2, "kind a list: generate with it", [*GEN, "--brick", "cells", *R], "error", setup),
        Case(
            2,
            "kind a list: combine others",
            [*COMBINE, "--name", "m"],
            "ok",
            setup,
            brick_intact("m"),
        ),
        Case(2, "kind a list: retrieve", ["bricks", "retrieve", "x", *R, *M], "either", setup),
        Case(2, "kind a list: stitch", ["stitch", "x", "--input", "y", *R, *M], "either", setup),
    ]
    return cases


COVARIANCE_DAMAGE = ("nan", "inf", "wrong shape", "no cov", "zero count", "truncated", "empty")
COVARIANCE_DAMAGE += ("garbage",)


def covariance_cases() -> list[Case]:
    """3: a corrupt covariance cache: the edit heals it and still changes the model."""
    cases = []
    healed = both(edited_model_differs, covariance_healed)
    for damage in COVARIANCE_DAMAGE:
        argv = [*EDIT, *R, "--name", "e2", "--out", "{w}/edited"]
        cases.append(
            Case(3, f"covariance cache {damage}", argv, "ok", damage_covariance(damage), healed)
        )
    for damage in ("nan", "truncated", "wrong shape"):
        argv = [*EDIT, *R, "--name", "e2", "--out", "{w}/edited", "--method", "alphaedit"]
        cases.append(
            Case(
                3,
                f"covariance cache {damage} (alphaedit)",
                argv,
                "ok",
                damage_covariance(damage),
                healed,
            )
        )
    return cases


def model_cache_cases() -> list[Case]:
    """4: the dequantized default model's cache: damage is found and the cache re-created."""
    argv = ["generate", "hi", "--configure", "none", "--max-new-tokens", "1"]
    env = {"BRICKWORK_CACHE": "{w}/dc"}
    cases = [
        Case(
            4,
            f"model cache {d}",
            argv,
            "ok",
            damage_model_cache(d),
            both(model_cache_intact, says("warning")),
            env=env,
            timeout=400,
        )
        for d in ("flip", "truncated", "missing", "no checksums", "config")
    ]
    cases.append(
        Case(
            4,
            "BRICKWORK_CACHE is a file",
            argv,
            "ok",
            None,
            says("warning"),
            env={"BRICKWORK_CACHE": "{fx}/a_file"},
            timeout=400,
        )
    )
    return cases


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


WRITER = """
import sys
from brickwork.bricks import BrickRepository
r = BrickRepository(sys.argv[1])
for i in range(int(sys.argv[2])):
    b = r.get("cells")
    b.purpose = ("coding", "coding2")[i % 2]
    r.add(b, overwrite=True)
"""
READERS = """
import subprocess, sys
from brickwork.bricks import BrickRepository
repo, mode, writer_code = sys.argv[1], sys.argv[2], sys.argv[3]
writer = subprocess.Popen([sys.executable, "-c", writer_code, repo, "60"])
r = BrickRepository(repo)
fails = reads = 0
while writer.poll() is None or reads < 5:
    try:
        if mode == "get":
            assert r.get("cells").purpose in ("coding", "coding2")
        elif mode == "list":
            assert "cells" in [m["name"] for m in r.list()] and not r.skipped
        else:
            cli = [sys.executable, "-m", "brickwork", "bricks", "show", "cells", "--repo", repo]
            done = subprocess.run(cli, capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
    except Exception as exc:
        fails += 1
        print(repr(exc)[:200])
    reads += 1
writer.wait()
print(f"{fails} of {reads} reads failed; writer exit {writer.returncode}")
sys.exit(1 if fails or writer.returncode else 0)
"""
COMBINERS = """
import subprocess, sys
repo = sys.argv[1]
cli = [sys.executable, "-m", "brickwork", "combine", "linear", "--repo", repo, "--bricks",
       "task,task2", "--name"]
procs = [subprocess.Popen([*cli, f"m{i}"]) for i in range(4)]
codes = [p.wait() for p in procs]
print("exit codes", codes)
sys.exit(max(codes))
"""


def concurrency_cases() -> list[Case]:
    """8: readers while another process overwrites the brick they read; concurrent writers."""
    cases = [
        Case(
            8,
            f"{mode} during 60 overwrites",
            ["@python", READERS, "{repo}", mode, WRITER],
            "ok",
            check=both(says("0 of", "out"), brick_intact("cells")),
            timeout=400,
        )
        for mode in ("get", "list", "cli show")
    ]
    every = both(*(brick_intact(f"m{i}") for i in range(4)), brick_intact("task"), no_leftovers)
    cases.append(
        Case(
            8,
            "4 concurrent combine runs",
            ["@python", COMBINERS, "{repo}"],
            "ok",
            check=every,
            timeout=400,
        )
    )
    return cases


def _leftover(name):
    def step(w):
        (w / "repo" / "bricks" / name).mkdir()
        (w / "repo" / "bricks" / name / "weights.safetensors").write_bytes(b"x" * 1000)

    return step


def orphan_cases() -> list[Case]:
    """9: leftovers of killed writes, a lock held by another process, shared permissions."""
    tmp, old = full(_leftover(".polite.x1y2.tmp")), full(_leftover(".cells.old"))
    removed = full(_leftover(".cells.removed"))
    held = {"BRICKWORK_LOCK_TIMEOUT": "3"}
    waits = says("waiting for the lock")
    cases = [
        Case(
            9,
            "leftover .tmp: verify reports it",
            ["bricks", "verify", *R],
            "ok",
            tmp,
            says("LEFTOVER .polite.x1y2.tmp", "out"),
        ),
        Case(9, "leftover .tmp: gc removes it", ["bricks", "gc", *R], "ok", tmp, no_leftovers),
        Case(
            9,
            "leftover .tmp: list ignores it",
            ["bricks", "list", *R],
            "ok",
            tmp,
            says("polite", "out"),
        ),
        Case(
            9,
            "leftover .tmp: add that name",
            [*STEER, "--name", "polite2"],
            "ok",
            tmp,
            brick_intact("polite2"),
        ),
        Case(
            9,
            "stale .old beside the brick: show",
            ["bricks", "show", "cells", *R],
            "ok",
            old,
            brick_intact("cells", ("coding",)),
        ),
        Case(
            9,
            "stale .old beside the brick: remove",
            ["bricks", "remove", "cells", *R],
            "ok",
            old,
            gone("cells"),
        ),
        Case(
            9,
            "stale .removed: remove",
            ["bricks", "remove", "cells", *R],
            "ok",
            removed,
            gone("cells"),
        ),
        Case(
            9,
            "stale .old: overwrite",
            [*COMBINE, "--name", "cells", "--overwrite"],
            "ok",
            old,
            both(brick_intact("cells"), no_leftovers),
        ),
        Case(
            9,
            "lock held: remove",
            ["bricks", "remove", "cells", *R],
            "error",
            lock_held,
            waits,
            env=held,
        ),
        Case(
            9,
            "lock held: train steer",
            [*STEER, "--name", "s"],
            "error",
            lock_held,
            waits,
            env=held,
        ),
        Case(
            9, "lock held: combine", [*COMBINE, "--name", "m"], "error", lock_held, waits, env=held
        ),
        Case(9, "lock held: edit", [*EDIT, *R, "--name", "e"], "error", lock_held, waits, env=held),
        Case(
            9,
            "lock held: list (a reader)",
            ["bricks", "list", *R],
            "ok",
            lock_held,
            says("polite", "out"),
            env=held,
        ),
        Case(
            9,
            "stale lock file, nobody holds it",
            ["bricks", "remove", "cells", *R],
            "ok",
            None,
            gone("cells"),
        ),
        Case(
            9,
            "new brick shared (0755/0644)",
            [*STEER, "--name", "s"],
            "ok",
            None,
            shared_modes("repo/bricks/s"),
        ),
        Case(
            9,
            "combined brick shared",
            [*COMBINE, "--name", "m"],
            "ok",
            None,
            shared_modes("repo/bricks/m"),
        ),
        Case(9, "grown model shared", GROW, "ok", None, shared_modes("g")),
        Case(
            9,
            "edited model shared",
            [*EDIT, *R, "--name", "e", "--out", "{w}/edited"],
            "ok",
            None,
            both(shared_modes("edited"), shared_modes("repo/bricks/e")),
        ),
        Case(9, "new repository shared", ["bricks", "gc", "--repo", "{w}/r2"], "either", None),
    ]
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


def all_cases() -> list[Case]:
    return [
        *crash_cases(),
        *malformed_cases(),
        *covariance_cases(),
        *model_cache_cases(),
        *traceback_cases(),
        *accepted_cases(),
        *late_check_cases(),
        *concurrency_cases(),
        *orphan_cases(),
        *long_input_cases(),
    ]
