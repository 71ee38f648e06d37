"""The brickwork command line: thin wrappers, each calling one public function."""

from __future__ import annotations

import argparse
import shlex
import sys

from brickwork.errors import BrickworkError


def _shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected i/n, e.g. 0/2, got {text!r}") from None
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"need 0 <= i < n, got {text}")
    return index, count


def cmd_models(args: argparse.Namespace) -> None:
    from brickwork.models import BUILTINS, DEFAULT_MODEL, FAMILIES

    print("built-in models:")
    for name, builtin in BUILTINS.items():
        marker = " (default)" if name == DEFAULT_MODEL else ""
        print(f"  {name}{marker}: {builtin.description}")
    print("supported families: " + ", ".join(sorted(FAMILIES)))


def cmd_profile(args: argparse.Namespace) -> None:
    from brickwork.data import load_data
    from brickwork.models import load_model
    from brickwork.profile import profile_model, summarize

    samples = load_data(args.data, split=args.split)
    loaded = load_model(args.model, trust_remote_code=args.trust_remote_code)
    profile = profile_model(
        loaded,
        samples,
        batch_size=args.batch_size,
        max_tokens=args.max_tokens,
        shard=args.shard,
        seed=args.seed,
        command=args.command_line,
        progress=not args.quiet,
    )
    if _is_main_process():
        out = profile.save(args.out)
        _print_summary(summarize(profile), out)


def cmd_merge_profiles(args: argparse.Namespace) -> None:
    from brickwork.profile import load_profile, merge_profiles, summarize

    merged = merge_profiles([load_profile(path) for path in args.profiles])
    out = merged.save(args.out)
    _print_summary(summarize(merged), out)


def cmd_analyze(args: argparse.Namespace) -> None:
    from brickwork.analysis import AnalysisSettings, analyze, save_analysis
    from brickwork.data import load_data
    from brickwork.models import load_model
    from brickwork.profile import load_profile
    from brickwork.report import render_report, summary_lines

    samples = load_data(args.data)
    profile = load_profile(args.profile) if args.profile else None
    loaded = load_model(args.model, trust_remote_code=args.trust_remote_code)
    settings = AnalysisSettings(
        fraction=args.fraction,
        per_layer=args.selection == "per-layer",
        eval_per_functionality=args.eval_per_functionality,
        curve_per_functionality=args.curve_per_functionality,
        seed=args.seed,
    )
    analysis = analyze(loaded, samples, settings=settings, profile=profile, dataset=args.data,
                       command=args.command_line, progress=not args.quiet)  # fmt: skip
    out = save_analysis(analysis, args.out)
    report = render_report(analysis.results, out)
    print("\n".join(summary_lines(analysis.results)))
    print(f"saved {out}/results.json and {report}")


def cmd_report(args: argparse.Namespace) -> None:
    from brickwork.report import load_results, render_report

    print(f"saved {render_report(load_results(args.dir), args.dir)}")


def cmd_bricks(args: argparse.Namespace) -> None:
    from brickwork.bricks import BrickRepository

    if args.action in ("show", "remove") and not args.name:
        raise BrickworkError(f"bricks {args.action} needs a brick name")
    if args.action == "extract" and not args.analysis:
        raise BrickworkError("bricks extract needs --analysis DIR (a brickwork analyze output)")
    repo = BrickRepository(args.repo, create=args.action == "extract")
    _BRICK_ACTIONS[args.action](repo, args)


def _bricks_list(repo, args) -> None:
    for meta in repo.search(kind=args.kind, purpose=args.purpose, text=args.text):
        print(f"{meta['name']:<40} {meta['kind']:<13} {meta['origin']:<10} {meta['purpose']}")


def _bricks_show(repo, args) -> None:
    import json

    brick = repo.get(args.name)
    shown = {
        k: getattr(brick, k)
        for k in (
            "name",
            "kind",
            "origin",
            "purpose",
            "base_model",
            "description",
            "spec",
            "provenance",
            "metrics",
        )
    }
    shown["tensors"] = {k: list(v.shape) for k, v in brick.tensors.items()}
    print(json.dumps(shown, indent=1))  # fmt: skip


def _bricks_verify(repo, args) -> None:
    report = repo.verify()
    damaged = {name: files for name, files in report.items() if files}
    for name, files in damaged.items():
        print(f"DAMAGED {name}: {', '.join(files)}")
    print(f"{len(report) - len(damaged)} of {len(report)} bricks intact")
    if damaged:
        raise BrickworkError(f"{len(damaged)} damaged bricks in {args.repo}")


def _bricks_remove(repo, args) -> None:
    repo.remove(args.name)
    print(f"removed {args.name}")


def _bricks_extract(repo, args) -> None:
    import json

    from brickwork.bricks.extract import extract_bricks

    summary = extract_bricks(
        args.analysis,
        repo,
        n_groups=args.groups,
        methods=tuple(args.methods.split(",")),
        overwrite=args.overwrite,
    )
    print(json.dumps(summary, indent=1))  # fmt: skip


_BRICK_ACTIONS = {"list": _bricks_list, "show": _bricks_show, "verify": _bricks_verify,
                  "remove": _bricks_remove, "extract": _bricks_extract}  # fmt: skip


def _add_bricks(commands) -> None:
    bricks = commands.add_parser("bricks", help="list, show, verify, remove or extract bricks")
    bricks.add_argument("action", choices=("list", "show", "verify", "remove", "extract"))
    bricks.add_argument("name", nargs="?", help="brick name (show, remove)")
    bricks.add_argument("--repo", default="bricks", help="repository directory (default: bricks)")
    bricks.add_argument("--kind", help="list: only this kind")
    bricks.add_argument("--purpose", help="list: only this functionality or purpose")
    bricks.add_argument("--text", help="list: name, purpose or description contains this")
    bricks.add_argument("--analysis", help="extract: a brickwork analyze output directory")
    bricks.add_argument(
        "--groups", type=int, default=16, help="extract: groups (experts) per layer"
    )
    bricks.add_argument(
        "--methods",
        default="weights,coactivation",
        help="extract: grouping methods, comma-separated",
    )
    bricks.add_argument("--overwrite", action="store_true", help="extract: replace same names")
    bricks.set_defaults(run=cmd_bricks)  # fmt: skip


def cmd_train(args: argparse.Namespace) -> None:
    from brickwork.bricks import BrickRepository
    from brickwork.data import load_texts
    from brickwork.models import load_model

    repo = BrickRepository(args.repo)  # fail on a bad repository before training
    if args.name in {m["name"] for m in repo.list()}:
        raise BrickworkError(f"a brick named {args.name!r} is already in {args.repo}")
    texts = {k: load_texts(getattr(args, k)) for k in ("positive", "negative") if getattr(args, k)}
    train = _task_data(args.data) if args.kind == "task" else None
    documents = load_texts(args.data) if args.kind == "knowledge" else None
    loaded = load_model(args.model, trust_remote_code=args.trust_remote_code)
    brick = _TRAINERS[args.kind](loaded, args, train, documents, texts)
    path = repo.add(brick)
    print(f"{brick.name}: {brick.metrics}")
    print(f"saved {path}")


def _train_task(loaded, args, data, documents, texts):
    from brickwork.bricks.train import train_task_brick

    train, heldout = data
    return train_task_brick(loaded, train, heldout, args.name, args.purpose, rank=args.rank,
                            steps=args.steps, lr=args.lr, seed=args.seed,
                            max_seconds=args.max_seconds, progress=not args.quiet)  # fmt: skip


def _train_knowledge(loaded, args, data, documents, texts):
    from brickwork.bricks.train import train_knowledge_brick

    return train_knowledge_brick(loaded, documents, args.name, args.purpose, rank=args.rank,
                                 steps=args.steps, lr=args.lr, seed=args.seed,
                                 max_seconds=args.max_seconds, progress=not args.quiet)  # fmt: skip


def _train_steer(loaded, args, data, documents, texts):
    from brickwork.bricks.train import build_steering_brick

    if set(texts) != {"positive", "negative"} or not args.layers:
        raise BrickworkError("train steer needs --positive FILE, --negative FILE and --layers")
    layers = [int(x) for x in args.layers.split(",")]
    positive, negative = texts["positive"], texts["negative"]
    return build_steering_brick(loaded, positive, negative, layers, args.name, args.purpose,
                                scale=args.scale, progress=not args.quiet)  # fmt: skip


_TRAINERS = {"task": _train_task, "knowledge": _train_knowledge, "steer": _train_steer}


def _task_data(path: str | None):
    """(train, held-out) prompt/reference pairs from a JSONL file's train and test splits."""
    from brickwork.data import load_data

    if not path:
        raise BrickworkError("train task needs --data FILE.jsonl with prompt and reference fields")
    return load_data(path, split="train"), load_data(path, split="test")


def _add_train(commands) -> None:
    from brickwork.models import DEFAULT_MODEL

    train = commands.add_parser("train", help="build a customized brick (base model frozen)")
    train.add_argument("kind", choices=tuple(_TRAINERS))
    train.add_argument("--name", required=True, help="brick name")
    train.add_argument("--purpose", required=True, help="the task or knowledge it adds")
    train.add_argument(
        "--data",
        help="task: JSONL of prompt/reference pairs with train/test "
        "splits; knowledge: .txt (one document per line) or .jsonl with 'text'",
    )
    train.add_argument("--positive", help="steer: prompts showing the behaviour (.txt or .jsonl)")
    train.add_argument("--negative", help="steer: contrasting prompts")
    train.add_argument("--layers", help="steer: comma-separated decoder layer indices")
    train.add_argument("--scale", type=float, default=1.0, help="steer: vector scale")
    train.add_argument("--repo", default="bricks", help="repository to add the brick to")
    train.add_argument("--model", default=DEFAULT_MODEL, help="base model")
    train.add_argument("--rank", type=int, default=8)
    train.add_argument("--steps", type=int, default=200)
    train.add_argument("--lr", type=float, default=5e-4)
    train.add_argument("--max-seconds", type=float, default=None)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--trust-remote-code", action="store_true")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(run=cmd_train)  # fmt: skip


def _is_main_process() -> bool:
    import torch.distributed as dist

    return not dist.is_initialized() or dist.get_rank() == 0


def _print_summary(summary: dict, out) -> None:
    speed = summary["tokens_per_second"]
    print(f"model {summary['model']} ({summary['fingerprint']})")
    print(
        f"{summary['instances']} instances, {summary['prompt_tokens']} prompt tokens, "
        f"{summary['layers']} layers x {summary['d_ff']} neurons"
        + (f", {summary['seconds']:.1f} s ({speed} tokens/s)" if speed else "")
    )
    for name in ("activation", "output"):
        below = summary[f"below_0.2_{name}"]
        print(
            f"normalized {name:<10} < 0.2: {below['mean']:.1%} of (token, neuron) pairs "
            f"(layers {below['min_layer']:.1%}-{below['max_layer']:.1%}; paper: ~80%)"
        )
    for functionality, stats in summary["functionalities"].items():
        print(
            f"  {functionality:<12} {stats['instances']:>4} instances "
            f"{stats['prompt_tokens']:>6} tokens  mean |a| {stats['mean_abs_activation']:.4f}"
        )
    print(f"saved {out}")


def _add_common(command: argparse.ArgumentParser, data_help: str = "") -> None:
    """The options every model-running command shares."""
    from brickwork.data import BUILTIN_DATA, INFINITY_DATA
    from brickwork.models import DEFAULT_MODEL

    command.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="built-in name, HF model directory, .gguf file or Hub id",
    )
    command.add_argument(
        "--data",
        default=BUILTIN_DATA,
        help=f"{BUILTIN_DATA!r}, {INFINITY_DATA!r} or a JSONL file{data_help}",
    )
    command.add_argument("--out", required=True, help="output directory")
    command.add_argument("--seed", type=int, default=0)
    command.add_argument("--trust-remote-code", action="store_true")
    command.add_argument("--quiet", action="store_true", help="no progress bars")  # fmt: skip


def _add_profile(commands) -> None:
    profile = commands.add_parser("profile", help="profile every FFN neuron on a dataset")
    _add_common(profile)
    profile.add_argument("--split", default="all", choices=("all", "train", "test"))
    profile.add_argument(
        "--shard",
        type=_shard,
        default=(0, 1),
        help="profile only shard i of n (merge with merge-profiles)",
    )
    profile.add_argument("--batch-size", type=int, default=8)
    profile.add_argument("--max-tokens", type=int, default=256)
    profile.set_defaults(run=cmd_profile)  # fmt: skip


def _add_analyze(commands) -> None:
    from brickwork.analysis import AnalysisSettings

    analyze = commands.add_parser("analyze", help="the paper's §4 neuron analysis, with a report")
    _add_common(analyze, data_help=" (with train and test splits)")
    analyze.add_argument("--profile", help="reuse this profile directory instead of profiling")
    analyze.add_argument(
        "--fraction",
        type=float,
        default=AnalysisSettings.fraction,
        help="share of neurons selected per functionality",
    )
    analyze.add_argument("--selection", choices=("per-layer", "global"), default="per-layer")
    analyze.add_argument(
        "--eval-per-functionality",
        type=int,
        default=AnalysisSettings.eval_per_functionality,
        help="test samples per functionality for the ablation",
    )
    analyze.add_argument(
        "--curve-per-functionality",
        type=int,
        default=AnalysisSettings.curve_per_functionality,
        help="test samples per functionality for masked-ratio curves",
    )
    analyze.set_defaults(run=cmd_analyze)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="brickwork", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    models = commands.add_parser("models", help="list built-in models and supported families")
    models.set_defaults(run=cmd_models)
    _add_profile(commands)
    _add_analyze(commands)
    _add_bricks(commands)
    _add_train(commands)
    report = commands.add_parser("report", help="re-render report.html from results.json")
    report.add_argument("dir", help="an analyze output directory")
    report.set_defaults(run=cmd_report)
    merge = commands.add_parser("merge-profiles", help="add shard profiles into one")
    merge.add_argument("profiles", nargs="+", help="profile directories")
    merge.add_argument("--out", required=True)
    merge.set_defaults(run=cmd_merge_profiles)
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


if __name__ == "__main__":
    sys.exit(main())
