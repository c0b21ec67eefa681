"""A judge you can check: every judge (`judge`, plus the `judges` list of conf/judges/) labels the run's answers
and a set of canary answers made from gold answers (optimize/evaluation/canaries.py); summary.json `judge_checks`
reports per judge J, its canary accept rate per kind (a judge that accepts canaries is lenient), and per pair of
judges their percent agreement and Cohen's kappa on the run's answers (optimize/evaluation/agreement.py).

J of an extra judge follows `judge_question` (a failed answer is WRONG without asking, a judge failure counts
WRONG, category 5 is not judged); agreement counts the answers both judges labelled. A canary accept rate is
CORRECT labels / canaries the judge labelled (its failures are counted apart, never as accepts)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from itertools import combinations
from typing import Any

import polars as pl
from hydra.utils import instantiate
from omegaconf import DictConfig

from ..data.types import Conversation, Dataset
from ..threads import in_order
from .agreement import agreement
from .canaries import KINDS, entity_pool, proper_nouns, session_dates, vague_canary, wrong_entity_canary
from .judge import Judge, judge_question
from .parallel import _concurrency  # not a public helper there: parallel.py's source keys the ingestion cache
from .prices import add_judges, load_prices


def build_judges(cfg: DictConfig, judge: Judge | None) -> list[Judge]:
    """The extra judges of `cfg.judges`; refused without the main judge (J is the main judge's)."""
    nodes = list(cfg.get("judges") or [])
    if nodes and judge is None:
        raise ValueError("judges=... adds judges beside the main one: set judge=openai too (J is the main judge's)")
    return [instantiate(node) for node in nodes]


def conversation_pool(conversation: Conversation) -> tuple[set[str], dict[str, list[str]]]:
    """The names and the typed entities of one conversation, for its wrong-entity canaries."""
    names = proper_nouns(t.text for t in conversation.turns())
    pool = entity_pool(
        (q.answer for q in conversation.questions),
        names,
        (conversation.speaker_a, conversation.speaker_b),
        session_dates(s.timestamp for s in conversation.sessions),
    )
    return names, pool


def make_canaries(
    frame: pl.DataFrame, dataset: Dataset, categories: Sequence[int], n: int, seed: int
) -> list[dict[str, Any]]:
    """Canaries for a seeded sample of n judged questions (categories in `categories`, with a gold answer)."""
    if n <= 0:
        return []
    rows = [
        r for r in frame.iter_rows(named=True) if r["category"] in categories and r["category"] != 5 and r["answer"]
    ]
    random.Random(seed).shuffle(rows)
    pools = {c.sample_id: conversation_pool(c) for c in dataset.conversations}
    out = []
    for row in rows[:n]:
        names, pool = pools[row["conversation_id"]]
        made = {
            "vague": vague_canary(row["answer"], names),
            "wrong_entity": wrong_entity_canary(row["answer"], pool, row["qid"], names),
        }
        for kind in KINDS:
            if made[kind] is not None:
                out.append(
                    {
                        "qid": row["qid"],
                        "kind": kind,
                        "question": row["question"],
                        "gold": row["answer"],
                        "canary": made[kind],
                    }
                )
    return out


def canary_counts(dataset: Dataset, cfg: DictConfig) -> dict[str, int]:
    """Per conversation: the canaries judge_checks will ask each judge about on a run of the whole `dataset` (they
    are made from the gold answers alone, so a dry run knows the number before any answer exists)."""
    checks = cfg.get("judge_checks") or {}
    rows = [(q.qid, c.sample_id, q.category, q.question, q.answer) for c in dataset.conversations for q in c.questions]
    columns = ["qid", "conversation_id", "category", "question", "answer"]  # the run's frame, in its row order
    gold = pl.DataFrame(rows, schema=columns, orient="row")
    categories = [int(c) for c in cfg.overall_categories]
    made = make_canaries(gold, dataset, categories, int(checks.get("canaries", 50)), int(checks.get("seed", 0)))
    conversation_of = dict(zip(gold["qid"], gold["conversation_id"]))
    out = {c.sample_id: 0 for c in dataset.conversations}
    for canary in made:
        out[conversation_of[canary["qid"]]] += 1
    return out


def judge_concurrency(cfg: DictConfig) -> int:
    """Judge calls at once in the checks: `judge.lm.max_concurrency` (1 without a judge)."""
    judge = cfg.get("judge")
    return _concurrency(judge.get("lm") if judge else None, "judge.lm")


def _labels(judge: Judge, frame: pl.DataFrame, main: bool, workers: int) -> list[dict]:
    """Per question: J value (None where undefined) and the label the judge gave (None: failed or not asked)."""

    def one(r: dict) -> dict:
        if main:
            j = {"judge": r["judge"], "judge_failed": r["judge_failed"]}
        else:
            j = judge_question(judge, r["qid"], r["question"], r["answer"], r["prediction"], r["category"])
        labelled = j["judge"] is not None and not j["judge_failed"] and not r["answer_failed"]
        return {"j": j["judge"], "failed": j["judge_failed"], "label": bool(j["judge"]) if labelled else None}

    return in_order(one, list(frame.iter_rows(named=True)), 1 if main else workers)


def judge_checks(
    frame: pl.DataFrame, dataset: Dataset, judge: Judge | None, extra: Sequence[Judge], cfg: DictConfig
) -> tuple[dict | None, list[dict]]:
    """(summary.json `judge_checks`, one row per canary and judge); (None, []) without a judge. Each judge's calls
    run `judge.lm.max_concurrency` at once; the labels and rows are those of one call at a time."""
    if judge is None:
        return None, []
    judges = [judge, *extra]
    names = _unique([j.name for j in judges])
    categories = [int(c) for c in cfg.overall_categories]
    checks = cfg.get("judge_checks") or {}
    canaries = make_canaries(frame, dataset, categories, int(checks.get("canaries", 50)), int(checks.get("seed", 0)))
    in_overall = [r["category"] in categories for r in frame.iter_rows(named=True)]
    report: dict[str, dict] = {}
    labels: dict[str, list] = {}
    rows: list[dict] = []
    workers = judge_concurrency(cfg)
    for name, j in zip(names, judges):
        got = _labels(j, frame, j is judge, workers)
        labels[name] = [g["label"] for g in got]
        defined = [g["j"] for g, keep in zip(got, in_overall) if keep and g["j"] is not None]
        accepted: dict[str, list[float]] = {k: [] for k in KINDS}
        failures = {k: 0 for k in KINDS}

        def canary_score(c: dict, j: Judge = j) -> float | None:
            return j.score(f"{c['qid']}:canary:{c['kind']}", c["question"], c["gold"], c["canary"])

        scores = in_order(canary_score, canaries, workers)
        for c, score in zip(canaries, scores):
            rows.append({**c, "judge": name, "label": None if score is None else ("CORRECT" if score else "WRONG")})
            if score is None:
                failures[c["kind"]] += 1
            else:
                accepted[c["kind"]].append(score)
        report[name] = {
            "model": getattr(j.lm, "model", None),
            "prompt": j.prompt,
            "J": round(sum(defined) / len(defined), 4) if defined else None,
            "judge_n": len(defined),
            "judge_failures": sum(1 for g, keep in zip(got, in_overall) if keep and g["failed"]),
            "canary_accept_rate": {k: round(sum(v) / len(v), 4) if v else None for k, v in accepted.items()},
            "canaries": {k: len(v) for k, v in accepted.items()},
            "canary_failures": failures,
            # an extra judge's LM calls (labels and canaries), priced into summary cost.usd.judges by attach();
            # the main judge's are summary cost.judge
            **({} if j is judge else {"cost": j.meter.as_dict()}),
        }
    pairs = [agreement(a, labels[a], b, labels[b]) for a, b in combinations(names, 2)]
    for p in pairs:
        p.update({k: round(p[k], 4) for k in ("percent_agreement", "kappa") if p[k] is not None})
    summary = {
        "main": names[0],
        "judges": report,
        "agreement": pairs,
        "canary_questions": len({c["qid"] for c in canaries}),
        "seed": int(checks.get("seed", 0)),
    }
    return summary, rows


def _unique(names: Sequence[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        out.append(name if name not in out else f"{name}_{len(out) + 1}")
    return out


def attach(summary: dict, checks: dict | None, prices: str | None = None) -> dict:
    """Put the checks into a summary.json: `judge_checks`, the main judge's canary accept rates beside J, and the
    extra judges' dollars and tokens into its cost (at the price table `prices`, None: conf/lm/prices.yaml)."""
    if checks is not None:
        summary["judge_checks"] = checks
        extra = {name: r for name, r in checks["judges"].items() if "cost" in r}
        add_judges(summary["cost"], extra, load_prices(prices))
        if isinstance(summary.get("judge"), dict):
            main = checks["judges"][checks["main"]]
            summary["judge"].update(prompt=main["prompt"], canary_accept_rate=main["canary_accept_rate"])
    return summary


def judge_checks_line(checks: dict) -> str:
    """One line per judge for the console: J and canary accept rates; then the agreement of each pair."""
    lines = []
    for name, r in checks["judges"].items():
        rate = r["canary_accept_rate"]
        lines.append(
            f"judge {name} ({r['prompt']}, {r['model']}): J {r['J']}  canaries accepted: vague {rate['vague']} "
            f"(n={r['canaries']['vague']}), wrong entity {rate['wrong_entity']} (n={r['canaries']['wrong_entity']})"
        )
    lines += [
        f"agreement {p['a']} vs {p['b']}: {p['percent_agreement']} (kappa {p['kappa']}, n={p['n']})"
        for p in checks["agreement"]
    ]
    return "\n".join(lines)
