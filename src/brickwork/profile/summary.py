"""A short, plain-data summary of a Profile for the CLI and logs."""

from __future__ import annotations

from brickwork.profile.store import Profile

LOW_INDICATOR = 0.2  # paper §4.2: ~80% of neurons have a normalized indicator below 0.2


def fraction_below(hist, threshold: float = LOW_INDICATOR):
    """Per layer: the fraction of (token, neuron) pairs whose normalized indicator < threshold.

    ``hist`` is [F, L, bins] over [0, 1]; the threshold is rounded down to a bin edge.
    """
    per_layer = hist.sum(dim=0).double()  # [L, bins]
    edge = int(threshold * per_layer.shape[1])
    return per_layer[:, :edge].sum(dim=1) / per_layer.sum(dim=1)


def summarize(profile: Profile) -> dict:
    t, meta = profile.tensors, profile.meta
    tokens = int(t["token_count"].sum())
    seconds = meta.get("seconds") or 0.0
    summary = {
        "model": meta.get("model_source"),
        "fingerprint": meta.get("model_fingerprint"),
        "instances": int(t["covered"].sum()),
        "prompt_tokens": tokens,
        "layers": int(t["down_norms"].shape[0]),
        "d_ff": int(t["down_norms"].shape[1]),
        "seconds": seconds,
        "tokens_per_second": round(tokens / seconds, 1) if seconds else None,
        "functionalities": {},
    }
    for name, key in (("activation", "hist_activation"), ("output", "hist_output")):
        below = fraction_below(t[key])
        summary[f"below_{LOW_INDICATOR}_{name}"] = {
            "mean": round(float(below.mean()), 4),
            "min_layer": round(float(below.min()), 4),
            "max_layer": round(float(below.max()), 4),
        }
    for i, functionality in enumerate(meta["functionalities"]):
        count = int(t["token_count"][i])
        # Mean |activation| over this functionality's tokens, layers and neurons.
        mean_abs = float(t["sum_abs"][i].sum()) / max(count, 1) / t["sum_abs"][i].numel()
        n = sum(1 for f in meta["sample_functionalities"] if f == functionality)
        summary["functionalities"][functionality] = {
            "instances": n,
            "prompt_tokens": count,
            "mean_abs_activation": round(mean_abs, 6),
        }
    return summary
