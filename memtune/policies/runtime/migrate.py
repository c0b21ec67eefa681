"""memtune-migrate: re-embed a memory store for a new policy bundle or embedder, into a new store.

    memtune-migrate --src data/memories --dst data/memories-v2 --bundle bundles/mem0_offline-1a2b3c4d
    memtune-migrate --src data/memories --dst data/memories-oai --embedder openai --policy-version v7
    memtune-migrate --src ... --dst ... --embedder '{"_target_": "mypkg.MyEmbedder", "dim": 32}'

Why a new store: vectors of two embedders are not comparable, so a store cannot hold both, and a deployment should
switch stores atomically (point the service at --dst once the copy is complete) with the old one kept for
rollback. Every memory is copied with its id, scope, provenance, timestamps and metadata, a vector from the new
embedder, and the new policy_version; the whole history is copied too, plus one history row per memory recording
the migration (op UPDATE with the same text, metadata {"reason": "migrate", "from_embedder", "from_store"}).

The source is only read (through LanceDB directly: opening it as a MemoryStore could upgrade its schema), never
modified. An existing non-empty --dst is refused. The copy is written next to --dst and renamed into place when
complete, so an interrupted run leaves no half store at --dst. Prints a JSON report with the counts.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import uuid
from importlib.resources import files
from pathlib import Path

import lancedb
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ..store.changes import _now
from ..store.lance import _ROW_COLUMNS, META_EMBEDDER
from ..store.store import MemoryStore

BATCH = 256  # texts per embedder call


class MigrationError(ValueError):
    """A migration that cannot start (bad source, destination or target); nothing was written."""


def read_source(src: str, table: str) -> tuple[list[dict], list[dict], str]:
    """All memory rows (without vectors) and history rows of the store at `src`, and its embedder id; read-only."""
    db = lancedb.connect(src)
    try:
        memories = db.open_table(table)
    except ValueError:
        raise MigrationError(f"{src!r} has no table {table!r}: not a memtune memory store") from None
    names = set(memories.schema.names)
    rows = memories.search().select([c for c in _ROW_COLUMNS if c in names]).to_arrow().to_pylist()
    try:
        history = db.open_table(f"{table}_history").to_arrow().to_pylist()
    except ValueError:
        history = []
    embedder_id = (memories.schema.metadata or {}).get(META_EMBEDDER, b"").decode()
    return rows, history, embedder_id


def build_target(args) -> tuple[object, str, dict]:
    """The new embedder, the policy_version to stamp and the store knobs (a bundle's own store config)."""
    if args.bundle:
        from .bundle import read_bundle

        info = read_bundle(args.bundle)
        embedder = instantiate(OmegaConf.create(info.config["embedder"]))
        if embedder.id != info.embedder_id or int(embedder.dim) != info.embedder_dim:
            raise MigrationError(
                f"bundle {info.version} pins embedder {info.embedder_id!r} ({info.embedder_dim}-d) "
                f"but its config builds {embedder.id!r} ({embedder.dim}-d)"
            )
        store_cfg = {k: v for k, v in (info.config.get("store") or {}).items() if k != "_target_"}
        return embedder, args.policy_version or info.version, store_cfg
    spec = args.embedder.strip()
    if spec.startswith("{"):
        node = OmegaConf.create(json.loads(spec))
    else:
        conf = files("memtune.conf") / "embedder" / f"{spec}.yaml"
        if not conf.is_file():
            raise MigrationError(
                f"no embedder config {spec!r} (conf/embedder/{spec}.yaml); pass a name from "
                "conf/embedder/ or a JSON object with a _target_"
            )
        node = OmegaConf.create(conf.read_text())
    return instantiate(node), args.policy_version, {}


def migrate(
    src: str,
    dst: str,
    embedder,
    policy_version: str = "",
    store_cfg: dict | None = None,
    table: str = "memories",
    progress=None,
) -> dict:
    """Copy the store at `src` into a new store at `dst` with `embedder`'s vectors; returns the report."""
    t0 = time.perf_counter()
    src_path, dst_path = Path(src).resolve(), Path(dst).resolve()
    if src_path == dst_path:
        raise MigrationError("--dst must differ from --src (the source is never modified)")
    if dst_path.exists() and (not dst_path.is_dir() or any(dst_path.iterdir())):
        raise MigrationError(f"{dst} exists and is not empty: pick a new --dst (nothing was written)")
    if not src_path.is_dir():
        raise MigrationError(f"--src {src} does not exist")
    rows, history, from_embedder = read_source(str(src_path), table)
    tmp = dst_path.with_name(f".{dst_path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        knobs = {
            k: v
            for k, v in (store_cfg or {}).items()
            if k not in ("uri", "dim", "embedder_id", "policy_version", "table")
        }
        store = MemoryStore(
            tmp, dim=int(embedder.dim), embedder_id=embedder.id, table=table, policy_version=policy_version, **knobs
        )
        now = _now()
        meta = json.dumps(
            {"reason": "migrate", "from_embedder": from_embedder, "from_store": str(src_path)}, sort_keys=True
        )
        new_rows, notes = [], []
        for start in range(0, len(rows), BATCH):
            batch = rows[start : start + BATCH]
            vectors = embedder.embed([r["text"] for r in batch])
            for r, v in zip(batch, vectors):
                new_rows.append(
                    {
                        **{c: r.get(c) or ("" if c != "provenance" else []) for c in _ROW_COLUMNS},
                        "vector": v,
                        "embedder_id": embedder.id,
                        "policy_version": policy_version,
                    }
                )
                notes.append(
                    {
                        "memory_id": r["id"],
                        "op": "UPDATE",
                        "old_text": r["text"],
                        "new_text": r["text"],
                        "time": now,
                        "seq": store._next_seq(),
                        "provenance": [],
                        "user_id": r["user_id"] or "",
                        "agent_id": r["agent_id"] or "",
                        "run_id": r["run_id"] or "",
                        "metadata": meta,
                        "policy_version": policy_version,
                    }
                )
            if progress:
                progress(min(start + BATCH, len(rows)), len(rows))
        old_history = [{**h, "policy_version": h.get("policy_version") or ""} for h in history]
        store.bulk_load(new_rows, old_history + notes)
        store.compact()  # one fragment; the ANN index when past index_min_rows
        count = store.count()
        store.close()
        if count != len(rows):
            raise RuntimeError(f"copied {count} memories but the source holds {len(rows)}: {dst} was not written")
        if dst_path.exists():
            dst_path.rmdir()  # the empty directory checked above
        tmp.rename(dst_path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return {
        "src": str(src_path),
        "dst": str(dst_path),
        "memories": len(rows),
        "history_rows": len(old_history),
        "migration_rows": len(notes),
        "from_embedder": from_embedder,
        "to_embedder": embedder.id,
        "dim": int(embedder.dim),
        "policy_version": policy_version,
        "seconds": round(time.perf_counter() - t0, 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="memtune-migrate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--src", required=True, help="the store to copy (read-only)")
    ap.add_argument("--dst", required=True, help="the new store (must not exist, or be an empty directory)")
    target = ap.add_mutually_exclusive_group(required=True)
    target.add_argument("--bundle", help="a bundle directory (memtune-export): its embedder, version and store knobs")
    target.add_argument("--embedder", help="a conf/embedder name (minilm, openai) or a JSON object with _target_")
    ap.add_argument("--policy-version", default="", help="stamped on every memory (default: the bundle version)")
    ap.add_argument("--table", default="memories")
    args = ap.parse_args(argv)

    def progress(done: int, total: int) -> None:
        if done == total or done % (BATCH * 40) == 0:
            print(f"re-embedded {done:,}/{total:,} memories", file=sys.stderr, flush=True)

    try:
        embedder, version, store_cfg = build_target(args)
        report = migrate(args.src, args.dst, embedder, version, store_cfg, args.table, progress)
    except ValueError as e:  # MigrationError, BundleError, a store that refuses the embedder: nothing was written
        print(f"memtune-migrate: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
