"""Currency metrics of the knowledge-update question kinds (categories 11 current, 12 history, 13 stable of the
generated set, data/updates): from the per-question frame, so any run over such questions reports them.

    <kind>_first   share of the kind's questions whose FIRST retrieved memory cites the evidence turn (current: the
                   latest statement of the value, so the up-to-date memory is ranked first; history: the superseded
                   value's statement)
    <kind>_top5    share whose first five retrieved memories cite it (history: the superseded value is retrievable)
    n_<kind>       questions of the kind (with evidence)
    restated_once  share of the restated values that still hold and are stored once (restated.py; a generated set
                   with its label file only), over n_restated values

Only questions with evidence count. summary.json has a `currency` block only when the split has such questions,
so an objective on currency.* over LOCOMO fails loudly instead of reading a number that means nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl

KINDS = ("current", "history", "stable")


def currency_summary(frame: pl.DataFrame, per_conversation: Sequence[Mapping] = ()) -> dict:
    """{<kind>_first, <kind>_top5, n_<kind>} for the kinds present (see the module docstring), and restated_once
    / n_restated when the conversations have labels (restated.py); {} for none."""
    out: dict = {}
    counted = [c["restated"] for c in per_conversation if "restated" in c]
    if counted and (values := sum(v for v, _ in counted)):
        out["restated_once"] = round(sum(o for _, o in counted) / values, 4)
        out["n_restated"] = values
    if frame.is_empty() or "category_name" not in frame.columns:
        return out
    for kind in KINDS:
        rows = frame.filter((pl.col("category_name") == kind) & pl.col("first_hit").is_not_null())
        if rows.height:
            out[f"{kind}_first"] = round(rows["first_hit"].cast(pl.Int64).sum() / rows.height, 4)
            out[f"{kind}_top5"] = round(rows["hit_at_5"].cast(pl.Int64).sum() / rows.height, 4)
            out[f"n_{kind}"] = rows.height
    return out
