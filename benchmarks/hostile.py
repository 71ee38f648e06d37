"""Hostile-input sweep (issue 21): bad inputs and faults against the CLI, each outcome classified.

Every case runs ``python -m brickwork ...`` (or a small fault-injecting script) as a subprocess
with a timeout, in a fresh copy of a prepared brick repository, on a tiny random model (the real
default model only for its dequantized-model cache). Outcomes:

  clean      a bad input: exit 2, exactly one ``error:`` line, no traceback, nothing saved
             changed; a fault the CLI should survive: exit 0 and the case's check passes
  traceback  a Python traceback anywhere in the output
  accepted   a bad input exited 0
  flawed     a clean error whose check failed: something was written into the repository, the
             error came only after the model loaded, a lock wait said nothing...
  silent     exit 0 on a fault case, but the result is wrong (a no-op, a lost brick record...)
  lost       a file of a brick that was already saved changed or disappeared
  hang       the command ran past the timeout
  unclean    any other exit (another status, several error lines, an error where a fault
             should have been survived)

    python benchmarks/hostile.py [--classes 1-5] [--out hostile.json] [--no-default-model]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests.tiny

import hostile_faults as faults  # noqa: E402 (beside this file)
import hostile_inputs as inputs  # noqa: E402
from hostile_checks import EDIT, Case  # noqa: E402

OUTCOMES = ("clean", "traceback", "accepted", "flawed", "silent", "lost", "hang", "unclean")
CLASSES = {
    1: "overwrite/remove killed mid-swap",
    2: "malformed brick.json",
    3: "corrupt covariance cache",
    4: "corrupt dequantized-model cache (default model)",
    5: "inputs that gave tracebacks",
    6: "bad inputs that were accepted",
    7: "checks after the expensive work",
    8: "readers during concurrent overwrites",
    9: "orphans, lock waits, permissions",
    10: "long instruction cut silently",
}


# --- fixtures ---------------------------------------------------------------------------------


def build_fixtures(fx: Path, default_model: bool) -> None:
    """The tiny model, a repository with a LoRA, a neuron-set, a steering and an edit brick, and
    malformed files beside them (built once; reused while ``fx/ready`` exists)."""
    if (fx / "ready").is_file():
        return
    import torch
    from peft import LoraConfig, get_peft_model

    from brickwork.bricks import BrickRepository, neuron_set_brick, save_brick
    from brickwork.bricks.plugins import lora_brick_from_peft, steering_brick
    from brickwork.models import load_model
    from brickwork.ops.grow import grow_width, save_grown
    from tests.tiny import SHARP_FFN, save_broken_model_copies, save_sharp_llama

    fx.mkdir(parents=True, exist_ok=True)
    model_dir = save_sharp_llama(fx / "model")
    loaded = load_model(model_dir)
    fp = loaded.fingerprint
    repo = BrickRepository(fx / "repo")
    mask = torch.zeros(2, SHARP_FFN, dtype=torch.bool)
    mask[:, :16] = True
    repo.add(neuron_set_brick("cells", "coding", fp, mask, rule="test"))
    peft_model = get_peft_model(
        loaded.model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    )
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    lora = lora_brick_from_peft(peft_model, "task", "toy task", fp, provenance={"m": "t"})
    repo.add(lora)
    lora.name = "task2"
    repo.add(lora)
    steer = steering_brick("polite", "politeness", fp, torch.randn(1, 32), layers=[1])
    repo.add(steer)
    bad_rank = lora_brick_from_peft(peft_model, "badrank", "toy", fp, provenance={"m": "t"})
    key = next(k for k in bad_rank.tensors if "lora_A" in k)
    bad_rank.tensors[key] = bad_rank.tensors[key][:2]  # rank 2 A beside a rank 4 B
    save_brick(bad_rank, fx / "badrank")
    for name, vectors, layers in (
        ("wide", torch.ones(1, 33), [0]),
        ("far", torch.ones(1, 32), [999]),
        ("nan", torch.full((1, 32), float("nan")), [0]),
        ("none", None, [0]),
    ):
        brick = steering_brick(name, "x", fp, torch.ones(1, 32), layers)
        if vectors is None:
            del brick.tensors["vectors"]
        else:
            brick.tensors["vectors"] = vectors
        save_brick(brick, fx / f"steer-{name}")
    wrong = neuron_set_brick("wrongmask", "coding", fp, torch.ones(3, 7, dtype=torch.bool), "t")
    save_brick(wrong, fx / "mask-wrong")
    grown = grow_width(load_model(model_dir), [0], 8)  # (the LoRA wrapped ``loaded``)
    grown.loaded.tokenizer = loaded.tokenizer
    save_grown(grown, fx / "grown")
    save_broken_model_copies(model_dir, fx)
    (fx / "a_file").write_text("not a directory\n")
    latin1 = b'{"prompt": "caf\xe9", "reference": "x", "functionality": "toy", "split": "train"}'
    (fx / "latin1.jsonl").write_bytes(latin1 + b"\n")
    (fx / "latin1.txt").write_bytes(b"caf\xe9 au lait\n")
    (fx / "empty.jsonl").write_text("")
    (fx / "notjson.jsonl").write_text("{not json\n")
    (fx / "router.safetensors").write_bytes(b"garbage, not a router")
    (fx / "pos.txt").write_text("happy\nglad\n")
    (fx / "neg.txt").write_text("sad\nangry\n")
    pairs = [
        {"prompt": f"q{i}", "reference": f"a{i}", "functionality": "toy", "split": split}
        for i, split in enumerate(("train", "train", "train", "test", "test"))
    ]
    (fx / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    (fx / "docs.txt").write_text("The zorp of Quell is blue.\n" * 4)
    # an edit brick, and the covariance cache its edit computed
    env = {**os.environ, "BRICKWORK_CACHE": str(fx / "cache"), "PYTHONPATH": _pythonpath()}
    subprocess.run(
        brickwork(
            *[a.format(m=model_dir, repo=fx / "repo") for a in EDIT],
            "--repo",
            str(fx / "repo"),
            "--name",
            "fr",
        ),
        env=env,
        check=True,
    )
    if default_model:
        cached = default_cache_dir()
        shutil.copytree(cached, fx / "default-cache" / "models" / cached.name)
    (fx / "ready").write_text("ok\n")


def default_cache_dir() -> Path:
    from brickwork.models.builtin import BUILTINS
    from brickwork.models.load import _gguf_cache_dir, cache_root, load_model

    load_model("smollm2-135m-instruct")  # make sure the cache exists
    return _gguf_cache_dir(BUILTINS["smollm2-135m-instruct"].gguf_path(cache_root()), cache_root())


def brickwork(*args: str) -> list[str]:
    return [sys.executable, "-m", "brickwork", *args]


# --- running and classifying ------------------------------------------------------------------


def snapshot(repo: Path) -> dict:
    """sha256 of every saved file of the repository (hidden leftovers and the lock aside)."""
    if not repo.is_dir():
        return {}
    files = {}
    for p in sorted(repo.rglob("*")):
        rel = p.relative_to(repo)
        if p.is_file() and p.name != ".lock" and not any(s.startswith(".") for s in rel.parts):
            files[str(rel)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return files


def run_case(case: Case, fx: Path, timeout: float) -> dict:
    w = Path(tempfile.mkdtemp(prefix="hostile-"))
    cleanup = None
    try:
        shutil.copytree(fx / "repo", w / "repo")
        env = {**os.environ, "BRICKWORK_CACHE": str(w / "cache"), "PYTHONPATH": _pythonpath()}
        shutil.copytree(fx / "cache", w / "cache")
        if case.setup:
            cleanup = case.setup(w, fx)
        before = snapshot(w / "repo")  # after the setup: what the command must not change
        env.update({k: v.format(w=w, fx=fx) for k, v in case.env.items()})
        script = case.argv[0] == "@python"  # its code (argv[1]) is not a template
        args = [
            a if script and i == 1 else a.format(w=w, fx=fx, m=fx / "model", repo=w / "repo")
            for i, a in enumerate(case.argv)
        ]
        cmd = [sys.executable, "-c", *args[1:]] if args[0] == "@python" else brickwork(*args)
        limit = case.fsize

        def rlimit():
            if limit:
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        start = time.monotonic()
        try:
            proc = subprocess.run(
                cmd,
                env=env,
                cwd=w,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=case.timeout or timeout,
                preexec_fn=rlimit,
            )
            rc, out, err = proc.returncode, proc.stdout, proc.stderr
        except subprocess.TimeoutExpired as exc:
            rc, out, err = None, str(exc.stdout or ""), str(exc.stderr or "")
        seconds = time.monotonic() - start
        keep = case.keep_repo if case.keep_repo is not None else case.expect != "ok"
        after = snapshot(w / "repo")
        changed = keep and any(after.get(path) != digest for path, digest in before.items())
        problem = case.check(w, fx, out, err) if case.check and rc is not None else None
        added = sorted(set(after) - set(before))
        if keep and added and not problem and case.expect == "error":
            problem = f"wrote {added[0]} into the repository"
        outcome = classify(case.expect, rc, out, err, changed, problem)
        return {
            "class": case.cls,
            "case": case.name,
            "expect": case.expect,
            "outcome": outcome,
            "exit": rc,
            "seconds": round(seconds, 1),
            "problem": problem,
            "error_lines": [line for line in err.splitlines() if line.startswith("error:")],
            "stderr_tail": err[-600:] if outcome != "clean" else "",
        }
    finally:
        if callable(cleanup):
            cleanup()
        shutil.rmtree(w, ignore_errors=True)


def classify(expect, rc, out, err, changed, problem) -> str:
    if rc is None:
        return "hang"
    if changed:
        return "lost"
    if "Traceback" in err or "Traceback" in out:
        return "traceback"
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    clean_error = rc == 2 and len(errors) == 1
    if rc == 0 and expect == "error":
        return "accepted"
    if rc == 0:
        return "silent" if problem else "clean"
    if clean_error and expect in ("error", "either"):
        return "flawed" if problem else "clean"
    return "unclean"


def _pythonpath() -> str:
    parts = [str(HERE.parent / "src"), os.environ.get("PYTHONPATH", "")]
    return os.pathsep.join(p for p in parts if p)


def all_cases() -> list[Case]:
    return [
        *faults.crash_cases(),
        *faults.malformed_cases(),
        *faults.covariance_cases(),
        *faults.model_cache_cases(),
        *inputs.traceback_cases(),
        *inputs.accepted_cases(),
        *inputs.late_check_cases(),
        *faults.concurrency_cases(),
        *faults.orphan_cases(),
        *inputs.long_input_cases(),
    ]


def parse_classes(text: str) -> set[int]:
    chosen = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        chosen |= set(range(int(lo), int(hi or lo) + 1))
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", default="1-10", help="e.g. 1-5 or 2,6")
    parser.add_argument("--fixtures", help="prepared fixture directory (kept and reused)")
    parser.add_argument("--out", default="hostile.json", help="JSON of every case")
    parser.add_argument("--jobs", type=int, default=2, help="cases run at once")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per case")
    parser.add_argument("--no-default-model", action="store_true", help="skip class 4")
    parser.add_argument("--only", help="run cases whose name contains this text")
    args = parser.parse_args()
    fx = Path(args.fixtures or tempfile.mkdtemp(prefix="hostile-fx-")).resolve()
    start = time.monotonic()
    build_fixtures(fx, default_model=not args.no_default_model)
    print(f"fixtures ready in {time.monotonic() - start:.0f} s", file=sys.stderr)
    classes = parse_classes(args.classes) - ({4} if args.no_default_model else set())
    cases = [c for c in all_cases() if c.cls in classes]
    cases = [c for c in cases if not args.only or args.only in c.name]
    results = []
    with ThreadPoolExecutor(args.jobs) as pool:
        for result in pool.map(lambda c: run_case(c, fx, args.timeout), cases):
            results.append(result)
            Path(args.out).write_text(json.dumps(results, indent=1))  # kept if interrupted
    for r in results:
        if r["outcome"] != "clean":
            problem = r["problem"] or ""
            print(f"[{r['class']}] {r['case']}: {r['outcome']} (exit {r['exit']}) {problem}")
            print("    " + r["stderr_tail"].strip().replace("\n", "\n    ")[-400:])
    print_table(results)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"{len(results)} cases in {time.monotonic() - start:.0f} s; JSON: {args.out}")
    if not args.fixtures:
        shutil.rmtree(fx, ignore_errors=True)


def print_table(results: list[dict]) -> None:
    counts = {c: Counter(r["outcome"] for r in results if r["class"] == c) for c in CLASSES}
    print("| class | cases | " + " | ".join(OUTCOMES) + " |")
    print("|---|" + "---|" * (len(OUTCOMES) + 1))
    for c, name in CLASSES.items():
        n = sum(counts[c].values())
        if n:
            cells = " | ".join(str(counts[c][o]) for o in OUTCOMES)
            print(f"| {c}. {name} | {n} | {cells} |")
    total = Counter(r["outcome"] for r in results)
    cells = " | ".join(str(total[o]) for o in OUTCOMES)
    print(f"| total | {len(results)} | {cells} |")


if __name__ == "__main__":
    main()
