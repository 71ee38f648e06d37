"""Fault cases of ``benchmarks/hostile.py`` (issue 21, classes 1-4, 8, 9): killed writes, malformed
brick.json, corrupt caches, concurrent readers and writers, leftovers, held locks, file modes.
Placeholders: {m} the tiny model, {fx} the fixtures, {w} the case's work directory, {repo} its
copy of the prepared repository (bricks cells, task, task2, polite, fr)."""

from __future__ import annotations

from hostile_checks import (
    COMBINE,
    COMBINERS,
    EDIT,
    GEN,
    GROW,
    READERS,
    STEER,
    WRITER,
    Case,
    M,
    R,
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
    says,
    shared_modes,
    strict_json,
)


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
                keep_repo=False,  # removing it is what was asked
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
