"""``brickwork configure build``: slice a compact model for a functionality and budget, recover
it by self-distillation and save it for ``brickwork generate --configured DIR``."""

from __future__ import annotations

from pathlib import Path

RECOVERY_OPTIONS = ("mode", "steps", "lr", "rank", "seed", "max_seconds")


def register_build(commands) -> None:
    from brickwork.cli.options import add_model, add_quiet
    from brickwork.cli.settings import add_settings
    from brickwork.configure.recover import RecoverySettings

    configure = commands.add_parser("configure", help="build configured models once, reuse them")
    actions = configure.add_subparsers(dest="configure_command", required=True)
    build = actions.add_parser(
        "build", help="slice + recover a configured model for a functionality and budget"
    )
    build.add_argument("--functionality", required=True, help="the functionality to build for")
    build.add_argument("--budget", type=float, required=True, help="share of FFN neurons kept")
    build.add_argument("--analysis", required=True, help="analysis directory (brickwork analyze)")
    build.add_argument("--out", required=True, help="configured model directory to write")
    add_model(build)
    add_settings(build, RecoverySettings, only=RECOVERY_OPTIONS)
    add_quiet(build)
    build.set_defaults(run=run_build)


def run_build(args) -> None:
    from brickwork.cli.options import model_options
    from brickwork.cli.settings import settings_from
    from brickwork.configure.build import build_configured, save_configured
    from brickwork.configure.compact import check_budget
    from brickwork.configure.recover import RecoverySettings
    from brickwork.configure.select import load_stats
    from brickwork.data import load_builtin_suite
    from brickwork.errors import BrickworkError
    from brickwork.models import load_model

    check_budget(args.budget)
    settings = settings_from(args, RecoverySettings)
    settings.check()
    if not Path(args.analysis).is_dir():
        raise BrickworkError(f"no analysis directory at {args.analysis}")
    stats = load_stats(args.analysis)
    stats.index(args.functionality)  # an unknown functionality fails before the model loads
    loaded = load_model(args.model, **model_options(args))
    compact, brick = build_configured(
        loaded,
        stats,
        args.functionality,
        args.budget,
        load_builtin_suite("train"),
        settings,
        progress=not args.quiet,
    )
    folder = save_configured(compact, brick, args.out)
    m = brick.metrics
    print(f"configured model: {args.functionality} at {args.budget:.0%} of FFN neurons")
    print(
        f"recovery ({settings.mode}, {m['steps_run']} steps, {m['wall_seconds']:.0f} s): "
        f"held-out KL to dense {m['heldout_loss_before']:.3f} -> {m['heldout_loss_after']:.3f}"
    )
    print(f"saved {folder}: use it with generate --configured {folder}; it is also a plain")
    print("transformers model directory (AutoModelForCausalLM.from_pretrained loads it)")
