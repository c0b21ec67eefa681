"""Tables (markdown) and the growth plot (PNG) of the Mem0 vs Mem0g runs in runs/ (see run.sh).

    uv run python experiments/mem0-vs-mem0g/make_report.py

Writes tables.md and growth.png next to this file. Reads only runs/<name>/summary.json.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = HERE / "runs"
CATS = ["1 multi-hop", "2 temporal", "3 open-domain", "4 single-hop", "overall", "5 adversarial"]
ORDER = [
    "off",
    "off_top43",
    "on_soft",
    "only_soft",
    "on_soft_merge_score",
    "on_soft_show_invalid",
    "only_soft_hops2",
    "on_hard",
    "on_soft_max_age30",
    "on_soft_keep_last1",
    "on_soft_ner_nodes",
]


def load() -> dict[str, dict]:
    runs = {}
    for name in ORDER:
        path = RUNS / name / "summary.json"
        if path.exists():
            runs[name] = json.loads(path.read_text())
    return runs


def fmt(v, digits=3):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def overall_table(runs: dict[str, dict]) -> str:
    head = (
        "| run | F1 | BLEU-1 | evidence recall | graph-only recall | context tok/q | graph tok/q | nodes | "
        "valid edges | invalid edges | graph MB | ingest s |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, s in runs.items():
        o, g = s["scores"]["overall"], s.get("graph", {})
        lines.append(
            "| "
            + " | ".join(
                [
                    name,
                    fmt(o["f1"]),
                    fmt(o["bleu1"]),
                    fmt(o["evidence_recall"]),
                    fmt(o.get("graph_evidence_recall")),
                    fmt(o["context_tokens"], 0),
                    fmt(o.get("graph_context_tokens"), 0),
                    fmt(g.get("nodes")),
                    fmt(g.get("valid_edges")),
                    fmt(g.get("invalid_edges")),
                    fmt(g["disk_bytes"] / 1e6, 1) if g else "-",
                    fmt(s["ingest"]["seconds"], 0),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def category_table(runs: dict[str, dict], names: list[str]) -> str:
    head = "| category | n | " + " | ".join(f"{n} F1 / BLEU-1 / recall / graph recall / tok" for n in names) + " |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for cat in CATS:
        first = runs[names[0]]["scores"][cat]
        cells = []
        for n in names:
            c = runs[n]["scores"][cat]
            cells.append(
                f"{fmt(c['f1'])} / {fmt(c['bleu1'])} / {fmt(c['evidence_recall'])} / "
                f"{fmt(c.get('graph_evidence_recall'))} / {fmt(c['context_tokens'], 0)}"
            )
        lines.append(f"| {cat} | {first['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def growth_plot(runs: dict[str, dict], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {
        "on_soft": "soft, keep all (Mem0g)",
        "on_hard": "hard (delete)",
        "on_soft_max_age30": "soft, drop invalid > 30 days",
        "on_soft_keep_last1": "soft, keep last 1 version",
        "on_soft_ner_nodes": "soft, keep all, NER-only nodes",
    }
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(16, 4.5))
    notes = []
    for name, label in labels.items():
        growth = runs.get(name, {}).get("graph_growth")
        if not growth:
            continue
        x = [g["sessions"] for g in growth]
        style = {"linestyle": "--", "linewidth": 2.5} if name == "on_soft" else {}  # NER-only overlaps it
        ax1.plot(x, [g["invalid_edges"] for g in growth], label=label, **style)
        ax2.plot(x, [g["edges"] for g in growth], label=label, **style)
        ax3.plot(x, [g["disk_bytes"] / 1e6 for g in growth], label=label, **style)
        last = growth[-1]
        notes.append(
            f"{name}: after {last['sessions']} sessions {last['edges']:,} edges "
            f"({last['invalid_edges']:,} invalid, {last['invalid_edges'] / max(last['edges'], 1):.1%}), "
            f"{last['nodes']:,} nodes, {last['disk_bytes'] / 1e6:.1f} MB"
        )
    for ax, title in (
        (ax1, "invalid edges kept"),
        (ax2, "edges stored (valid + invalid)"),
        (ax3, "graph tables on disk (MB)"),
    ):
        ax.set_xlabel("sessions ingested (7 dev conversations, in order)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    fig.suptitle("Mem0g graph growth on the LOCOMO dev split (spaCy extraction, rule resolver)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    return notes


def main() -> None:
    runs = load()
    parts = ["## Overall (categories 1-4)", overall_table(runs)]
    core = [n for n in ("off", "on_soft", "only_soft", "on_soft_merge_score") if n in runs]
    if core:
        parts += ["## Per category", category_table(runs, core)]
    notes = growth_plot(runs, HERE / "growth.png")
    parts += ["## Growth (growth.png)", "\n".join(f"- {n}" for n in notes)]
    cost = []
    for name, s in runs.items():
        phases = s["cost"]["ingest"]["phases"]
        graph_s = sum(v["seconds_total"] for k, v in phases.items() if k.startswith("graph"))
        lm = sum(v["calls"] for v in phases.values())
        cost.append(
            f"- {name}: ingest {s['ingest']['seconds']:.0f} s (graph phases {graph_s:.0f} s), "
            f"LM calls {lm}, cache hit {s['ingest']['cache_hit']}, wall {s['wall_seconds']:.0f} s"
        )
    parts += ["## Cost", "\n".join(cost)]
    (HERE / "tables.md").write_text("\n\n".join(parts) + "\n")
    print((HERE / "tables.md").read_text())


if __name__ == "__main__":
    main()
