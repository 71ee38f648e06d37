"""Reading brick.json of format version 1 as version 2.

Version 1 had five kinds and told the rest apart by their spec: a ``plugin`` with
``plugin_type`` ``lora`` or ``steering``, and ``layer`` bricks that were really edits
(``spec["update"]``), causal traces (``p_clean``) or grown parameters (``slices``). Version 2
gives each its own kind; the files are unchanged, so checksums still hold.
"""

from __future__ import annotations

import copy


def migrate_v1(meta: dict) -> dict:
    """brick.json (version 1) as version 2; ``meta`` itself is left unchanged."""
    meta = copy.deepcopy(meta)
    kind, spec = meta.get("kind"), meta.get("spec", {})
    if kind == "plugin" and isinstance(spec, dict):
        kind = spec.pop("plugin_type", kind)  # "lora" or "steering"
    elif kind == "layer" and isinstance(spec, dict):
        if "update" in spec:
            kind = "delta"
        elif "p_clean" in spec:
            kind = "trace"
        elif "slices" in spec:
            kind = "grown"
    meta["kind"] = kind
    meta["format_version"] = 2
    return meta
