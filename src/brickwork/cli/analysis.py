"""Profiling and neuron-analysis commands: models, profile, merge-profiles, analyze, report."""

from __future__ import annotations

import argparse

from brickwork.cli.common import (
    add_common,
    close_process_group,
    is_main_process,
    print_summary,
    shard,
)


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
    try:
        if is_main_process():
            out = profile.save(args.out)
            print_summary(summarize(profile), out)
    finally:
        close_process_group()


def cmd_merge_profiles(args: argparse.Namespace) -> None:
    from brickwork.profile import load_profile, merge_profiles, summarize

    merged = merge_profiles([load_profile(path) for path in args.profiles])
    out = merged.save(args.out)
    print_summary(summarize(merged), out)


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
    analysis = analyze(
        loaded,
        samples,
        settings=settings,
        profile=profile,
        dataset=args.data,
        command=args.command_line,
        progress=not args.quiet,
    )
    out = save_analysis(analysis, args.out)
    report = render_report(analysis.results, out)
    print("\n".join(summary_lines(analysis.results)))
    print(f"saved {out}/results.json and {report}")


def cmd_report(args: argparse.Namespace) -> None:
    from brickwork.analysis import load_results
    from brickwork.report import render_report

    print(f"saved {render_report(load_results(args.dir), args.dir)}")


def _add_profile(commands) -> None:
    profile = commands.add_parser("profile", help="profile every FFN neuron on a dataset")
    add_common(profile)
    profile.add_argument("--split", default="all", choices=("all", "train", "test"))
    profile.add_argument(
        "--shard",
        type=shard,
        default=(0, 1),
        help="profile only shard i of n (merge with merge-profiles)",
    )
    profile.add_argument("--batch-size", type=int, default=8)
    profile.add_argument("--max-tokens", type=int, default=256)
    profile.set_defaults(run=cmd_profile)


def _add_analyze(commands) -> None:
    from brickwork.analysis import AnalysisSettings

    analyze = commands.add_parser("analyze", help="the paper's §4 neuron analysis, with a report")
    add_common(analyze, data_help=" (with train and test splits)")
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
    analyze.set_defaults(run=cmd_analyze)


def register(commands) -> None:
    models = commands.add_parser("models", help="list built-in models and supported families")
    models.set_defaults(run=cmd_models)
    _add_profile(commands)
    _add_analyze(commands)
    report = commands.add_parser("report", help="re-render report.html from results.json")
    report.add_argument("dir", help="an analyze output directory")
    report.set_defaults(run=cmd_report)
    merge = commands.add_parser("merge-profiles", help="add shard profiles into one")
    merge.add_argument("profiles", nargs="+", help="profile directories")
    merge.add_argument("--out", required=True)
    merge.set_defaults(run=cmd_merge_profiles)
