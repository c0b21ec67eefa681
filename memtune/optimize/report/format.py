"""Markdown formatting helpers shared by the report.md sections."""

from __future__ import annotations

import math


def fmt_num(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def fmt_cell(row: dict | None, digits: int = 3) -> str:
    if row is None:
        return "—"
    if row["mean"] is None:
        return "n/a (n=0)"
    return f"{fmt_num(row['mean'], digits)} [{fmt_num(row['ci_low'], digits)}, {fmt_num(row['ci_high'], digits)}]"


def md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def fmt_ms(seconds) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.2f}"
