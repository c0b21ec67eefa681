"""`memtune-audit STORE [SCOPE]`: how healthy a memtune store is, read-only unless asked.

    memtune-audit .cache/memtune/ingest/<key>/store              # an eval run's ingested store, every scope
    memtune-audit /var/lib/memtune/store alice                   # a server's store, user_id alice
    memtune-audit STORE user_id=alice,agent_id=coach --top 10
    memtune-audit STORE alice --apply supersede                  # perform a fix (one batch, in the history)

Reports what a store alone supports (health.py's definitions): memories (valid) and stored rows, the duplicate
rate and the worst duplicate clusters, contradiction pairs (one person, one slot, two values), both with ids and
text, and growth over the kept LanceDB versions and over the history (growth.png); then, per fix, how many changes
it would make and the exact command (fixes.py: supersede, merge, purge). Stale retrieval and memories per 100
turns need the conversation and its questions: memtune-eval reports them. Writes audit.json and growth.png to
--out (default outputs/audit/<time>_<store>); never writes to the store without --apply.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from datetime import datetime
from pathlib import Path

from ..evaluation.health import DUPLICATE_COSINE, contradiction_pairs, duplicate_clusters, duplicate_flags
from .fixes import FIXES, apply_fix, plan
from .growth import history_growth, plot_growth, version_counts
from .read import AuditError, StoreData, parse_scope, read_store


def audit(store: str, scope_text: str = "", top: int = 5, table: str = "memories") -> tuple[dict, StoreData]:
    """The audit of `store` for the scope (see the module docstring) as a JSON-able dict, and what it read."""
    scope = parse_scope(scope_text)
    data = read_store(store, scope, table)
    valid = [i for i, r in enumerate(data.records) if r.valid]
    records = [data.records[i] for i in valid]
    vectors, groups = data.vectors[valid], [r.scope for r in records]
    clusters = duplicate_clusters(vectors, groups)
    pairs = contradiction_pairs([r.text for r in records], groups)

    def shown(i: int) -> dict:
        r = records[i]
        return {
            "id": r.id,
            "user_id": r.scope.user_id,
            "text": r.text,
            "timestamp": r.timestamp,
            "created_at": r.created_at,
        }

    fixes = {}
    for fix in FIXES:
        n = len(plan(fix, data.records, data.vectors))
        command = ["memtune-audit", store, *([scope_text] if scope_text else []), "--apply", fix]
        fixes[fix] = {"changes": n, "command": shlex.join(command) if n else None}
    report = {
        "store": store,
        "scope": scope_text or "(all)",
        "embedder_id": data.embedder_id,
        "scopes": len({s.user_id for s in data.scopes}),
        "memories": len(records),
        "stored": len(data.records),
        "superseded": len(data.records) - len(records),
        "duplicate_cosine": DUPLICATE_COSINE,
        "duplicate_rate": round(float(duplicate_flags(vectors, groups).mean()), 4) if records else 0.0,
        "duplicate_clusters": len(clusters),
        "worst_duplicate_clusters": [[shown(i) for i in c] for c in clusters[:top]],
        "contradictions": len(pairs),
        "contradiction_pairs": [[shown(a), shown(b)] for a, b in pairs[:top]],
        "growth_history": history_growth(data.history),
        "growth_versions": version_counts(data.path, table, data.versions, scope),
        "fixes": fixes,
        "not_from_a_store": "stale_retrieval_rate and memories_per_100_turns need the conversation: memtune-eval",
    }
    return report, data


def render(report: dict) -> str:
    """The report as text."""
    lines = [
        f"memtune-audit {report['store']}  scope {report['scope']}  ({report['scopes']} user_ids, "
        f"embedder {report['embedder_id']})",
        f"memories (valid): {report['memories']}   stored rows: {report['stored']}   superseded: {report['superseded']}",
        f"duplicate rate (cosine >= {report['duplicate_cosine']}): {report['duplicate_rate']:.2%} in "
        f"{report['duplicate_clusters']} clusters   contradiction pairs: {report['contradictions']}",
    ]
    for n, cluster in enumerate(report["worst_duplicate_clusters"], 1):
        lines.append(f"  duplicate cluster {n} ({len(cluster)} memories):")
        lines += [f"    {m['id']}  [{m['user_id']}]  {m['text'][:100]}" for m in cluster]
    for n, (a, b) in enumerate(report["contradiction_pairs"], 1):
        lines.append(f"  contradiction {n}: {a['id']}  {a['text'][:80]}")
        lines.append(
            f"                   {b['id']}  {b['text'][:80]}  (newer)"
            if b["created_at"] >= a["created_at"]
            else f"                   {b['id']}  {b['text'][:80]}"
        )
    versions = report["growth_versions"]
    if versions:
        lines.append(
            f"growth over {len(versions)} kept version(s): {versions[0]['memories']} -> {versions[-1]['memories']} "
            f"memories; over the history: {len(report['growth_history'])} changes"
        )
    for fix, row in report["fixes"].items():
        lines.append(f"fix {fix}: {row['changes']} change(s)" + (f": {row['command']}" if row["command"] else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="memtune-audit", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("store", help="the store directory (a server's store_uri, or .cache/memtune/ingest/<key>/store)")
    ap.add_argument(
        "scope", nargs="?", default="", help="a user_id, or user_id=..,agent_id=..,run_id=.. (default: all)"
    )
    ap.add_argument("--top", type=int, default=5, help="duplicate clusters and contradiction pairs shown")
    ap.add_argument("--out", default=None, help="where audit.json and growth.png go (default outputs/audit/...)")
    ap.add_argument("--table", default="memories")
    ap.add_argument("--apply", choices=FIXES, default=None, help="perform this fix (writes to the store)")
    args = ap.parse_args(argv)
    try:
        report, data = audit(args.store, args.scope, args.top, args.table)
        out = Path(args.out or f"outputs/audit/{datetime.now():%Y-%m-%d_%H-%M-%S}_{Path(args.store).name}")
        plot_growth(
            report["growth_history"], report["growth_versions"], out / "growth.png", f"{args.store} {report['scope']}"
        )
        if args.apply:
            changes = plan(args.apply, data.records, data.vectors)
            report["applied"] = {
                "fix": args.apply,
                "changes": apply_fix(data.path, data.table, data.embedder_id, data.dim, changes),
            }
        out.mkdir(parents=True, exist_ok=True)
        (out / "audit.json").write_text(json.dumps(report, indent=2, default=str))
    except AuditError as err:
        print(f"memtune-audit: {err}", file=sys.stderr)
        return 2
    print(render(report))
    if args.apply:
        print(
            f"applied {args.apply}: {report['applied']['changes']} change(s); re-run without --apply to see the store now"
        )
    print(out / "audit.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
