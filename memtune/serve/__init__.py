"""Servers over the runtime Memory API of an exported policy: REST (FastAPI) and MCP (imports are lazy)."""

import os

# One BLAS thread (set before numpy loads OpenBLAS): OpenBLAS threads spin after each product and starve the query
# embedding (onnxruntime) and other requests on a small machine. benchmarks/search_latency.py, 100k memories on
# 2 cores: in-process search p95 34.6 ms with the default threads, 19.0 ms with one.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# One LanceDB CPU thread (read when LanceDB starts its pool): a full-text query otherwise spreads over every core and
# starves the query's embedding, which hybrid search now runs beside it (MemoryPolicy.start_keyword).
# benchmarks/search_latency.py, 100k memories, 2 cores: hybrid in-process p95 26.0 ms with LanceDB's default
# threads, 17.4 ms with one; filling and compacting the 100k-row store (FTS index build) 24-25 s either way.
os.environ.setdefault("LANCE_CPU_THREADS", "1")
