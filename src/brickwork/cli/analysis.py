"""Profiling and neuron-analysis commands: models, profile, merge-profiles, analyze, report."""

from __future__ import annotations

import argparse

from brickwork.cli.common import close_process_group, is_main_process, print_summary, shard
from brickwork.cli.options import (
    add_data,
    add_model,
    add_out,
    add_quiet,
    allow_auto_batch_size,
    model_options,
    resolve_batch_size,
)
from brickwork.cli.outputs import check_out_dir
from brickwork.cli.settings import add_keywords, add_settings, keywords_from, settings_from
from brickwork.errors import BrickworkError

# Longest prompt (prefix and reference) the analysis runs in one forward pass.
ANALYSIS_TOKENS = 256
PROFILE_OPTIONS = {
    "batch_size": "prompts per forward pass",
    "max_tokens": "longest prompt, in tokens (longer ones are cut)",
    "seed": "seed recorded with the profile",
}


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

    check_out_dir(args.out)
    if args.max_tokens < 1:
        raise BrickworkError("--max-tokens must be at least 1")
    samples = load_data(args.data, split=args.split)
    loaded = load_model(args.model, **model_options(args))
    resolve_batch_size(args, loaded, args.max_tokens, reserved=_statistics(loaded, samples))
    profile = profile_model(
        loaded,
        samples,
        **keywords_from(args, PROFILE_OPTIONS),
        shard=args.shard,
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

    check_out_dir(args.out)
    samples = load_data(args.data)
    profile = load_profile(args.profile) if args.profile else None
    loaded = load_model(args.model, **model_options(args))
    resolve_batch_size(args, loaded, ANALYSIS_TOKENS, reserved=_statistics(loaded, samples))
    settings = settings_from(args, AnalysisSettings, per_layer=args.selection == "per-layer")
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


def _statistics(loaded, samples) -> int:
    """Bytes of the profile statistics ``samples`` will need (allocated after the batch size)."""
    from brickwork.models.estimate import statistics_bytes

    functionalities = len({s.functionality for s in samples})
    return statistics_bytes(loaded.model.config, len(samples), functionalities)


def cmd_report(args: argparse.Namespace) -> None:
    from brickwork.analysis import load_results
    from brickwork.report import render_report

    print(f"saved {render_report(load_results(args.dir), args.dir)}")


def _add_profile(commands) -> None:
    from brickwork.profile import profile_model

    profile = commands.add_parser("profile", help="profile every FFN neuron on a dataset")
    add_model(profile)
    add_data(profile)
    add_out(profile, "output directory")
    profile.add_argument("--split", default="all", choices=("all", "train", "test"), help="split")
    profile.add_argument(
        "--shard",
        type=shard,
        default=(0, 1),
        metavar="I/N",
        help="profile only shard i of n (merge with merge-profiles)",
    )
    add_keywords(profile, profile_model, PROFILE_OPTIONS)
    allow_auto_batch_size(profile)
    add_quiet(profile)
    profile.set_defaults(run=cmd_profile)


def _add_analyze(commands) -> None:
    from brickwork.analysis import AnalysisSettings

    analyze = commands.add_parser("analyze", help="the paper's §4 neuron analysis, with a report")
    add_model(analyze)
    add_data(analyze, " (with train and test splits)")
    add_out(analyze, "output directory")
    analyze.add_argument("--profile", help="reuse this profile directory instead of profiling")
    add_settings(analyze, AnalysisSettings, skip=("per_layer",))
    allow_auto_batch_size(analyze)
    analyze.add_argument(
        "--selection",
        choices=("per-layer", "global"),
        default="per-layer" if AnalysisSettings.per_layer else "global",
        help="top share of every layer (per-layer) or of all neurons at once (global)",
    )
    add_quiet(analyze)
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
    add_out(merge, "merged profile directory")
    merge.set_defaults(run=cmd_merge_profiles)
