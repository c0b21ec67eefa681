"""Tables (markdown + JSON) and a plot (PNG) of the knowledge-update runs in runs/ (see run.sh).

    uv run python experiments/knowledge-updates/make_report.py

Reads runs/<name>/summary.json and runs/<name>/questions.parquet; writes tables.md, results.json and currency.png
next to this file. Every CI is memtune-report's: a 95% percentile bootstrap, 2,000 two-stage resamples
(conversations, then questions within them; memtune/optimize/report/stats.py), seed 0. Paired differences are
b - a on the same questions, resampled the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402

from memtune.optimize.report.stats import bootstrap_ci, paired_bootstrap  # noqa: E402

HERE = Path(__file__).resolve().parent
RUNS = HERE / "runs"
LABELS = {  # run suffix -> the row's name; ORACLE rows replay canonical facts: not a policy
    "threshold": "threshold (default)",
    "threshold_slot_rank": "threshold + slot_rank",
    "add_only": "add_only",
    "add_only_slot_rank": "add_only + slot_rank",
    "supersede_hard": "supersede, hard",
    "supersede_hard_slot_rank": "supersede, hard, slot_rank",
    "supersede_soft": "supersede, soft",
    "supersede_soft_when_asked": "supersede, soft, history when_asked",
    "supersede_soft_always": "supersede, soft, history always",
    "supersede_soft_when_asked_slot_rank": "**supersede, soft, when_asked, slot_rank**",
    "oracle_threshold": "[ORACLE facts] threshold",
    "oracle_supersede_soft_when_asked": "[ORACLE facts] supersede, soft, when_asked",
    "oracle_supersede_soft_when_asked_slot_rank": "[ORACLE facts] supersede, soft, when_asked, slot_rank",
    "graph_on_soft": "Mem0g: graph on (vector top-30 + triplets), soft edges",
    "graph_only_soft": "graph only, soft edges (invalid hidden)",
    "graph_only_soft_invalid": "graph only, soft edges, invalid shown",
    "graph_only_hard": "graph only, hard (contradicted edges deleted)",
}
VECTOR = [k for k in LABELS if not k.startswith("graph")]
GRAPH = ["supersede_soft_when_asked_slot_rank", "threshold"] + [k for k in LABELS if k.startswith("graph")]
KINDS = {11: "current", 12: "history", 13: "stable"}
LOCOMO = {1: "1 multi-hop", 2: "2 temporal", 3: "3 open-domain", 4: "4 single-hop"}
SETS = {
    "upd": "generated set (data/updates, seed 0)",
    "seed1": "second generated set (seed 1)",
    "people4": "third generated set (seed 2, 4 people, 5 conversations)",
}


def load(name: str) -> tuple[dict, pl.DataFrame] | None:
    run = RUNS / name
    if not (run / "summary.json").exists() or not (run / "questions.parquet").exists():
        return None
    return json.loads((run / "summary.json").read_text()), pl.read_parquet(run / "questions.parquet")


def ci(frame: pl.DataFrame, column: str) -> dict | None:
    rows = frame.filter(pl.col(column).is_not_null())
    if rows.is_empty():
        return None
    mean, lo, hi = bootstrap_ci(rows[column].cast(pl.Float64).to_numpy(), clusters=rows["conversation_id"].to_numpy())
    return {"mean": round(mean, 6), "lo": round(lo, 6), "hi": round(hi, 6), "n": rows.height}


def paired(a: pl.DataFrame, b: pl.DataFrame, column: str) -> dict:
    """b - a on the questions both scored (joined on qid)."""
    j = a.select("qid", "conversation_id", pl.col(column).alias("a")).join(
        b.select("qid", pl.col(column).alias("b")), on="qid"
    )
    j = j.filter(pl.col("a").is_not_null() & pl.col("b").is_not_null())
    d, lo, hi, p = paired_bootstrap(
        j["a"].cast(pl.Float64).to_numpy(),
        j["b"].cast(pl.Float64).to_numpy(),
        clusters=j["conversation_id"].to_numpy(),
    )
    return {"diff": round(d, 6), "lo": round(lo, 6), "hi": round(hi, 6), "p_gt0": round(p, 3), "n": j.height}


def fmt(c: dict | None, digits: int = 3) -> str:
    if not c:
        return "-"
    return f"{c['mean']:.{digits}f} [{c['lo']:.2f}, {c['hi']:.2f}]"


def fmt_d(c: dict) -> str:
    return f"{c['diff']:+.3f} [{c['lo']:+.3f}, {c['hi']:+.3f}]"


def kind_rows(frame: pl.DataFrame, category: int) -> pl.DataFrame:
    return frame.filter(pl.col("category") == category)


def generated(prefix: str, arms: list[str]) -> tuple[list[str], dict]:
    """The currency + health table of one generated set, and its numbers."""
    head = (
        "| run | current_first | history_top5 | stable_first | restated_once | dup rate | contradictions | "
        "stale retrieval | memories valid / stored | per 100 turns | recall (all kinds) |"
    )
    lines, out = [head, "|" + "---|" * (head.count("|") - 1)], {}
    for arm in arms:
        got = load(f"{prefix}_{arm}")
        if got is None:
            continue
        s, q = got
        h, c = s["health"], s.get("currency", {})
        row = {
            "current_first": ci(kind_rows(q, 11), "first_hit"),
            "current_top5": ci(kind_rows(q, 11), "hit_at_5"),
            "history_first": ci(kind_rows(q, 12), "first_hit"),
            "history_top5": ci(kind_rows(q, 12), "hit_at_5"),
            "stable_first": ci(kind_rows(q, 13), "first_hit"),
            "recall": ci(q.filter(pl.col("category").is_in(list(KINDS))), "evidence_recall"),
            **{f"{k}_{m}": ci(kind_rows(q, cat), m) for cat, k in KINDS.items() for m in ("f1", "evidence_recall")},
            "restated_once": c.get("restated_once"),
            "n_restated": c.get("n_restated"),
            "health": {k: v for k, v in h.items() if k != "growth"},
            "ops": s["cost"].get("ops"),
            "graph": s.get("graph"),
        }
        out[arm] = row
        lines.append(
            f"| {LABELS[arm]} | {fmt(row['current_first'])} | {fmt(row['history_top5'])} | "
            f"{fmt(row['stable_first'])} | {row['restated_once']} | {h['duplicate_rate']:.3f} | "
            f"{h['contradictions']} | {h['stale_retrieval_rate']:.3f} | {h['memories']} / {h['stored']} | "
            f"{h['memories_per_100_turns']:.1f} | {fmt(row['recall'])} |"
        )
    return lines, out


def per_kind(prefix: str, arms: list[str], numbers: dict) -> list[str]:
    head = "| run | " + " | ".join(f"{c} {k}: F1 / evidence recall" for c, k in KINDS.items()) + " |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for arm in arms:
        if arm in numbers:
            r = numbers[arm]
            cells = [f"{fmt(r[f'{k}_f1'])} / {fmt(r[f'{k}_evidence_recall'])}" for k in KINDS.values()]
            lines.append(f"| {LABELS[arm]} | " + " | ".join(cells) + " |")
    return lines


def graph_table(numbers: dict) -> list[str]:
    head = (
        "| run | current_first | current_top5 | history_first | history_top5 | stable_first | recall (all kinds) "
        "| nodes | valid edges | invalid edges |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for arm in GRAPH:
        if arm not in numbers:
            continue
        r, g = numbers[arm], numbers[arm]["graph"] or {}
        cells = [fmt(r[k]) for k in ("current_first", "current_top5", "history_first", "history_top5")]
        cells += [fmt(r["stable_first"]), fmt(r["recall"])]
        cells += [f"{g[k]:,}" if k in g else "-" for k in ("nodes", "valid_edges", "invalid_edges")]
        lines.append(f"| {LABELS[arm]} | " + " | ".join(cells) + " |")
    return lines


def heldout() -> tuple[list[str], dict]:
    arms = [a for a in LABELS if load(f"heldout_{a}") is not None]
    if "threshold" not in arms:
        return [], {}
    base = load("heldout_threshold")[1]  # type: ignore[index]
    groups = {**{str(c): [c] for c in LOCOMO}, "overall": list(LOCOMO)}
    names = {**{str(c): n for c, n in LOCOMO.items()}, "overall": "overall 1-4"}
    out: dict = {}
    lines = [
        "| run | category | n | F1 | evidence recall | ΔF1 vs threshold | Δrecall vs threshold |",
        "|---" * 7 + "|",
    ]
    for arm in arms:
        s, q = load(f"heldout_{arm}")  # type: ignore[misc]
        out[arm] = {"health": {k: v for k, v in s["health"].items() if k != "growth"}, "ops": s["cost"].get("ops")}
        for key, cats in groups.items():
            a, b = base.filter(pl.col("category").is_in(cats)), q.filter(pl.col("category").is_in(cats))
            row = {"f1": ci(b, "f1"), "evidence_recall": ci(b, "evidence_recall")}
            if arm != "threshold":
                row["d_f1"] = paired(a, b, "f1")
                row["d_recall"] = paired(a, b, "evidence_recall")
            out[arm][key] = row
            d = [fmt_d(row[k]) if k in row else "-" for k in ("d_f1", "d_recall")]
            lines.append(
                f"| {LABELS[arm]} | {names[key]} | {b.height} | {fmt(row['f1'])} | {fmt(row['evidence_recall'])} | "
                f"{d[0]} | {d[1]} |"
            )
    return lines, out


def heldout_health(numbers: dict) -> list[str]:
    head = "| run | memories valid / stored | UPDATE | NOOP | dup rate | contradictions | stale retrieval |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for arm, r in numbers.items():
        if arm.startswith("graph"):  # the health block is the vector store's: the same as threshold's
            continue
        h, o = r["health"], r["ops"] or {}
        lines.append(
            f"| {LABELS[arm]} | {h['memories']} / {h['stored']} | {o.get('UPDATE', 0)} | {o.get('NOOP', 0)} | "
            f"{h['duplicate_rate']:.3f} | {h['contradictions']} | {h['stale_retrieval_rate']:.3f} |"
        )
    return lines


def plot(numbers: dict, path: Path) -> None:
    arms = [a for a in VECTOR if a in numbers and a != "supersede_soft_always"]
    metrics = [
        ("current_first", "current: first"),
        ("history_top5", "history: top 5"),
        ("stable_first", "stable: first"),
    ]
    fig, ax = plt.subplots(figsize=(13, 6))
    width = 0.8 / len(metrics)
    for i, (key, label) in enumerate(metrics):
        xs = [j + (i - 1) * width for j in range(len(arms))]
        ms = [numbers[a][key]["mean"] for a in arms]
        err = [
            [m - numbers[a][key]["lo"] for a, m in zip(arms, ms)],
            [numbers[a][key]["hi"] - m for a, m in zip(arms, ms)],
        ]
        ax.bar(xs, ms, width, yerr=err, capsize=2, label=label)
    ax.axhline(0.9, color="grey", linestyle="--", linewidth=1, label="target 0.90")
    names = [LABELS[a].strip("*").replace("[ORACLE facts]", "ORACLE:") for a in arms]
    ax.set_xticks(range(len(arms)), names, fontsize=7, rotation=25, ha="right")
    ax.set_ylabel("share of questions (95% CI)")
    ax.set_title("Generated set (seed 0): the evidence memory first / in the top 5, per question kind")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    md, results = ["# Knowledge updates: tables (make_report.py)", ""], {}
    for prefix, title in SETS.items():
        lines, numbers = generated(prefix, VECTOR)
        if not numbers:
            continue
        results[prefix] = numbers
        md += [f"## {title}: currency and health", "", *lines, "", f"## {title}: F1 / evidence recall per kind", ""]
        md += [*per_kind(prefix, VECTOR, numbers), ""]
        if prefix == "upd":
            _, graph_numbers = generated(prefix, [a for a in LABELS if a.startswith("graph")])
            results[prefix].update(graph_numbers)
            md += ["## generated set: the graph's invalidation beside the vector store's", ""]
            md += [*graph_table(results[prefix]), ""]
            plot(numbers, HERE / "currency.png")
    lines, numbers = heldout()
    if numbers:
        results["heldout"] = numbers
        md += ["## LOCOMO held out (conv-43/44/47): per category, paired vs threshold", "", *lines, ""]
        md += ["## LOCOMO held out: health", "", *heldout_health(numbers), ""]
    (HERE / "tables.md").write_text("\n".join(md))
    (HERE / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {HERE / 'tables.md'}, {HERE / 'results.json'}")


if __name__ == "__main__":
    main()
