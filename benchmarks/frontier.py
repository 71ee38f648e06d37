"""The quality-speed frontier of configured models at one FFN budget, in one process.

Models (each TEST sample is scored by the model of its labelled functionality; GSM8K -> math,
HumanEval -> coding, Multi30k -> translation):
- dense;
- per-instruction compact: the functionality's static selection (configure build's), without
  and with its recovery brick (prebuilt by ``--sections build`` into ``--configured``);
- instruction-agnostic compact (generic importance) + the same recovery settings, trained on as
  many TRAIN prompts as one functionality has, drawn evenly from all seven;
- GRIFFIN: prompt-selected compact model + 0.5 x the functionality's prior (``generate``'s
  default); dense prefill, compact decode;
- token level: TEAL, CATS (thresholds calibrated on TRAIN tokens) and the per-token top-|a|
  oracle; their decode speed is the gathered sparse kernel's (TEAL, CATS) or the masked dense
  model's (top-|a|): whatever runs here, measured, not the FLOP count.

Quality: reference perplexity of held-out TEST samples of each functionality, GSM8K solutions,
HumanEval canonical solutions and Multi30k en->fr references (--data); chrF (sacrebleu) of
greedy Multi30k en->fr translations. Speed: decode tok/s (batch 1) and prefill tok/s (one
256-token prompt), best of interleaved rounds; parameter bytes. Writes a JSON piece
(benchmarks/frontier_report.py prints the table and plots the frontier).

    python benchmarks/frontier.py --sections build --budget 0.5 --configured runs/cfg
    python benchmarks/frontier.py --budget 0.5 --configured runs/cfg --out runs/frontier/b50.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from configure import _lines, real_eval_samples, test_subset

from brickwork import load_builtin_suite, load_model
from brickwork.bricks.train_eval import chrf, generate_answers
from brickwork.configure.build import (
    MANIFEST,
    build_configured,
    load_configured,
    save_configured,
)
from brickwork.configure.compact import gather_ffn
from brickwork.configure.evaluate import decode_speed, mean_nll, parameter_bytes, prefill_speed
from brickwork.configure.pipeline import PRIOR_MIX
from brickwork.configure.prompted import (
    dense_prefill,
    prompt_compact,
    prompt_ids,
    prompted_generate,
    prompted_losses_at,
)
from brickwork.configure.recover import RecoverySettings, recover
from brickwork.configure.select import (
    baseline_selection,
    check_stats,
    functionality_selection,
    load_stats,
)
from brickwork.configure.sparse_ffn import sparse_decode
from brickwork.configure.token_sparsity import METHODS, apply_sparsity, calibrate
from brickwork.data import Sample
from brickwork.models.tokens import prompt_prefix

CACHE = Path("/tmp/brickwork-recovery-cache")  # dense continuations, shared with recovery.py
REAL = {"gsm8k": "math", "humaneval": "coding", "multi30k": "translation"}
TRANSLATE = "Translate this English sentence into French:\n{}"
AGNOSTIC = "agnostic"


def humaneval_samples(data: Path, n: int, offset: int) -> list[Sample]:
    rows = [json.loads(x) for x in _lines(data / "humaneval.jsonl")[offset : offset + n]]
    return [
        Sample(f"humaneval-{i}", r["prompt"], "humaneval", reference=r["canonical_solution"])
        for i, r in enumerate(rows)
    ]


def owner(sample: Sample) -> str:
    """The functionality whose model scores a sample (real sets by their router label)."""
    return REAL.get(sample.functionality, sample.functionality)


def agnostic_train(per_functionality: int) -> list[Sample]:
    train = load_builtin_suite("train")
    names = sorted({s.functionality for s in train})
    share = -(-per_functionality // len(names))
    return [s for f in names for s in [x for x in train if x.functionality == f][:share]]


def section_build(dense, stats, args) -> None:
    """Slice + recover (configure build's own functions) and save under --configured."""
    settings = RecoverySettings(steps=args.steps, lr=args.lr)
    train = load_builtin_suite("train")
    for name in args.build:
        started = time.perf_counter()
        if name == AGNOSTIC:
            info = {"functionality": AGNOSTIC, "budget": args.budget, "rule": "generic"}
            compact = gather_ffn(
                dense, baseline_selection("generic", args.budget, stats=stats), info
            )
            own = agnostic_train(sum(s.functionality == "math" for s in train))
            brick = recover(
                dense, compact, own, settings, name="recovery-agnostic", cache_dir=CACHE
            )
            brick.metrics["wall_seconds"] = time.perf_counter() - started
        else:
            compact, brick = build_configured(
                dense, stats, name, args.budget, train, settings, cache_dir=CACHE
            )
        folder = save_configured(compact, brick, configured_dir(args, name))
        print(
            json.dumps(
                {
                    "built": str(folder),
                    "seconds": time.perf_counter() - started,
                    "steps": brick.metrics.get("steps_run"),
                }
            ),
            flush=True,
        )


def configured_dir(args, name: str) -> Path:
    return args.configured / f"{name}-{round(args.budget * 100)}"


def scored_nll(loaded, samples, groups) -> dict[str, float]:
    values = mean_nll(loaded, samples, groups) if samples else None
    present = {s.functionality for s in samples}
    return {g: float(v) for g, v in zip(groups, values.tolist(), strict=True) if g in present}


def translations(model_or_loaded, tokenizer, english: list[str]) -> list[str]:
    prompts = [TRANSLATE.format(e) for e in english]
    outs = generate_answers(model_or_loaded, tokenizer, prompts, max_new_tokens=48)
    return [o.strip().split("\n")[0] for o in outs]


class Frontier:
    """Builds the piece's models and fills ``rows[name]`` with nll / chrf / speed entries."""

    def __init__(self, dense, stats, args):
        self.dense, self.stats, self.args = dense, stats, args
        self.budget = args.budget
        self.functionalities = args.functionalities
        wanted = set(self.functionalities)
        samples = [
            s for s in test_subset(args.per_functionality, args.seed) if s.functionality in wanted
        ]
        real = real_eval_samples(args.data, args.real_per_set, offset=10)
        real += humaneval_samples(args.data, args.real_per_set, offset=10)
        self.samples = samples + [s for s in real if owner(s) in wanted]
        self.groups = list(dict.fromkeys(s.functionality for s in self.samples))
        english = _lines(args.data / "multi30k_test2016.en.txt")
        french = _lines(args.data / "multi30k_test2016.fr.txt")
        start = args.chrf_offset
        self.english = english[start : start + args.chrf_sentences]
        self.french = french[start : start + args.chrf_sentences]
        self.rows: dict[str, dict] = {}
        self.per_instruction = {
            f: gather_ffn(dense, functionality_selection(stats, {f: 1.0}, self.budget))
            for f in self.functionalities
        }
        self.recovered = {f: load_configured(configured_dir(args, f)) for f in self.functionalities}
        self.agnostic = load_configured(configured_dir(args, AGNOSTIC))
        self.recovery_seconds = {
            name: json.loads((configured_dir(args, name) / MANIFEST).read_text())["metrics"].get(
                "wall_seconds"
            )
            for name in [*self.functionalities, AGNOSTIC]
        }
        train = load_builtin_suite("train")[:: args.calib_stride]
        self.sparsity = {m: calibrate(dense, m, [self.budget], train)[self.budget] for m in METHODS}

    def prior(self, functionality: str):
        return self.stats.importance[self.stats.index(functionality)]

    def quality(self) -> None:
        pct = f"{self.budget:.0%}"
        dense, tok = self.dense, self.dense.tokenizer
        translate = "translation" in self.functionalities
        self._add("dense", scored_nll(dense, self.samples, self.groups))
        for name, models in (
            ("per-instruction", self.per_instruction),
            ("per-instruction + recovery", self.recovered),
        ):
            nll = {}
            for f, compact in models.items():
                own = [s for s in self.samples if owner(s) == f]
                nll.update(scored_nll(compact.loaded, own, self.groups))
            self._add(name, nll)
        self._add(
            "agnostic + recovery", scored_nll(self.agnostic.loaded, self.samples, self.groups)
        )
        griffin = prompted_losses_at(
            dense,
            self.samples,
            self.groups,
            [self.budget],
            lambda s: self.prior(owner(s)),
            PRIOR_MIX,
        )[self.budget]
        self._add("GRIFFIN (prompt + prior)", dict(zip(self.groups, griffin.tolist(), strict=True)))
        for method, sparsity in self.sparsity.items():
            with apply_sparsity(dense, sparsity):
                self._add(self._token_name(method), scored_nll(dense, self.samples, self.groups))
        if not translate:
            return
        started = time.perf_counter()
        self._chrf("dense", translations(dense, tok, self.english))
        self._chrf(
            "per-instruction",
            translations(self.per_instruction["translation"].loaded, tok, self.english),
        )
        self._chrf(
            "per-instruction + recovery",
            translations(self.recovered["translation"].loaded, tok, self.english),
        )
        self._chrf("agnostic + recovery", translations(self.agnostic.loaded, tok, self.english))
        prior = self.prior("translation")
        self._chrf(
            "GRIFFIN (prompt + prior)",
            [
                prompted_generate(dense, TRANSLATE.format(e), self.budget, 48, prior, PRIOR_MIX)[0]
                .strip()
                .split("\n")[0]
                for e in self.english
            ],
        )
        for method, sparsity in self.sparsity.items():
            with apply_sparsity(dense, sparsity):
                self._chrf(self._token_name(method), translations(dense, tok, self.english))
        print(f"(chrF generations {pct}: {time.perf_counter() - started:.0f} s)", flush=True)

    def _token_name(self, method: str) -> str:
        return {"top-abs": "per-token top-|a| oracle", "teal": "TEAL", "cats": "CATS"}[method]

    def _add(self, name: str, nll: dict) -> None:
        self.rows.setdefault(name, {})["nll"] = nll
        print(json.dumps({"model": name, "budget": self.budget, "nll": nll}), flush=True)

    def _chrf(self, name: str, outputs: list[str]) -> None:
        self.rows.setdefault(name, {})["chrf"] = chrf(outputs, self.french)
        # a failure mode chrF half-hides: the English source copied instead of translated
        copied = sum(o.strip() == e.strip() for o, e in zip(outputs, self.english, strict=True))
        self.rows[name]["copied_source"] = copied
        self.rows[name]["translations"] = outputs[:3]

    def speed(self) -> None:
        """Interleaved rounds; each model's best round counts."""
        dense, args = self.dense, self.args
        prompt = torch.tensor([prompt_prefix(dense.tokenizer, "Write a short story about a cat.")])
        ids = torch.randint(
            0,
            dense.model.config.vocab_size,
            (1, args.prefill_tokens),
            generator=torch.Generator().manual_seed(0),
        )
        pad = dense.tokenizer.pad_token_id
        first = self.functionalities[0]
        griffin = prompt_compact(
            dense,
            dense_prefill(dense, prompt_ids(dense, "Write a story.")),
            self.budget,
            self.prior(first),
            PRIOR_MIX,
        )
        models = {
            "dense": (dense.model, None),
            "per-instruction": (self.per_instruction[first].loaded.model, None),
            "per-instruction + recovery": (self.recovered[first].loaded.model, None),
            "agnostic + recovery": (self.agnostic.loaded.model, None),
            "GRIFFIN (prompt + prior)": (griffin.loaded.model, "griffin"),
            **{self._token_name(m): (None, m) for m in METHODS},
        }
        best = {name: {"decode": 0.0, "prefill": 0.0} for name in models}
        for _ in range(args.speed_rounds):
            for name, (model, kind) in models.items():
                decode, prefill, size = self._measure(model, kind, prompt, ids, pad)
                best[name]["decode"] = max(best[name]["decode"], decode)
                best[name]["prefill"] = max(best[name]["prefill"], prefill)
                best[name]["bytes"] = size
        for name, values in best.items():
            self.rows.setdefault(name, {}).update(values)
            print(json.dumps({"model": name, **values}), flush=True)

    def _measure(self, model, kind, prompt, ids, pad) -> tuple[float, float, int]:
        dense, tokens = self.dense, self.args.decode_tokens
        if kind is None:
            return (
                decode_speed(model, prompt, tokens, pad),
                prefill_speed(model, ids, 1),
                parameter_bytes(model),
            )
        if kind == "griffin":  # dense prefill + selection + gather, then the compact decodes
            started = time.perf_counter()
            prompt_compact(
                dense,
                dense_prefill(dense, ids),
                self.budget,
                self.prior(self.functionalities[0]),
                PRIOR_MIX,
            )
            prefill = ids.shape[1] / (time.perf_counter() - started)
            both = torch.nn.ModuleList([dense.model, model])
            return decode_speed(model, prompt, tokens, pad), prefill, parameter_bytes(both)
        sparsity = self.sparsity[kind]
        if kind == "top-abs":
            with apply_sparsity(dense, sparsity):
                return (
                    decode_speed(dense.model, prompt, tokens, pad),
                    prefill_speed(dense.model, ids, 1),
                    parameter_bytes(dense.model),
                )
        size = parameter_bytes(dense.model)  # it keeps every dense weight (measured outside)
        with sparse_decode(dense, sparsity) as sparse:
            return (
                decode_speed(sparse, prompt, tokens, pad),
                prefill_speed(sparse, ids, 1),
                size,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--analysis", type=Path, default=Path("runs/demo"))
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument(
        "--configured",
        type=Path,
        default=Path("runs/cfg"),
        help="directory of the configured models (built by --sections build)",
    )
    parser.add_argument("--budget", type=float, default=0.5)
    parser.add_argument("--functionalities", nargs="+", default=["math", "coding", "translation"])
    parser.add_argument(
        "--build",
        nargs="+",
        help="what --sections build builds (default: --functionalities and the agnostic model)",
    )
    parser.add_argument(
        "--sections", nargs="+", default=["quality", "speed"], choices=["build", "quality", "speed"]
    )
    parser.add_argument("--steps", type=int, default=RecoverySettings.steps)
    parser.add_argument("--lr", type=float, default=RecoverySettings.lr)
    parser.add_argument("--per-functionality", type=int, default=5)
    parser.add_argument("--real-per-set", type=int, default=5)
    parser.add_argument("--chrf-sentences", type=int, default=20)
    parser.add_argument("--chrf-offset", type=int, default=100)
    parser.add_argument("--calib-stride", type=int, default=6, help="every n-th TRAIN sample")
    parser.add_argument("--decode-tokens", type=int, default=32)
    parser.add_argument("--prefill-tokens", type=int, default=256)
    parser.add_argument("--speed-rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the JSON piece here")
    args = parser.parse_args()
    args.build = args.build or [*args.functionalities, AGNOSTIC]
    torch.set_num_threads(2)
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    dense = load_model(args.model)
    stats = load_stats(args.analysis)
    check_stats(stats, dense)
    if "build" in args.sections:
        section_build(dense, stats, args)
    if not {"quality", "speed"} & set(args.sections):
        return
    frontier = Frontier(dense, stats, args)
    if "quality" in args.sections:
        frontier.quality()
    if "speed" in args.sections:
        frontier.speed()
    piece = {
        "model": args.model,
        "budget": args.budget,
        "functionalities": args.functionalities,
        "groups": frontier.groups,
        "samples": {
            g: sum(s.functionality == g for s in frontier.samples) for g in frontier.groups
        },
        "chrf_sentences": len(frontier.english),
        "rows": frontier.rows,
        "recovery_seconds": frontier.recovery_seconds,
        "seconds": time.perf_counter() - started,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(piece, indent=1), encoding="utf-8")
    print(f"total {piece['seconds']:.0f} s")


if __name__ == "__main__":
    main()
