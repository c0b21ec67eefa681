"""Servers over the runtime Memory API of an exported policy: REST (FastAPI) and MCP (imports are lazy)."""

import os

# One BLAS thread (set before numpy loads OpenBLAS): OpenBLAS threads spin after each product and starve the query
# embedding (onnxruntime) and other requests on a small machine. benchmarks/search_latency.py, 100k memories on
# 2 cores: in-process search p95 34.6 ms with the default threads, 19.0 ms with one.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
