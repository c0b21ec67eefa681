"""report.md section "Judge checks": per run and judge, J beside the share of canary answers (vague-but-wrong,
wrong entity) it accepted, and the agreement of each pair of judges (summary.json `judge_checks`,
optimize/evaluation/judge_checks.py). Runs without a judge LM have none; then the section is left out."""

from __future__ import annotations

from .format import fmt_num, md_table
from .runs import Run


def judge_sections(runs: list[Run]) -> list[str]:
    checked = [r for r in runs if r.summary.get("judge_checks")]
    if not checked:
        return []
    rows, pairs = [], []
    for run in checked:
        checks = run.summary["judge_checks"]
        for name, j in checks["judges"].items():
            rate, n = j["canary_accept_rate"], j["canaries"]
            rows.append(
                [
                    run.label,
                    name + (" (J)" if name == checks["main"] else ""),
                    str(j["prompt"]),
                    str(j["model"]),
                    fmt_num(j["J"]),
                    f"{fmt_num(rate['vague'])} (n={n['vague']})",
                    f"{fmt_num(rate['wrong_entity'])} (n={n['wrong_entity']})",
                ]
            )
        pairs += [
            [run.label, p["a"], p["b"], str(p["n"]), fmt_num(p["percent_agreement"]), fmt_num(p["kappa"])]
            for p in checks["agreement"]
        ]
    lines = [
        "## Judge checks",
        "",
        "A judge that accepts canary answers (wrong answers made from the gold ones: too vague, or another entity of "
        "the same conversation) is lenient: read its J with that in mind.",
        "",
    ]
    lines += md_table(["run", "judge", "prompt", "model", "J", "canaries accepted: vague", "wrong entity"], rows)
    if pairs:
        lines += ["", *md_table(["run", "judge", "vs judge", "answers", "agreement", "Cohen's kappa"], pairs)]
    return [*lines, ""]
