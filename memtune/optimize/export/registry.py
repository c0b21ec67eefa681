"""Log a policy bundle as an MLflow pyfunc model and register it in the model registry.

"Models from code": the model is optimize/export/pyfunc_model.py (copied into the model by MLflow) plus the bundle
directory as an artifact, so nothing is pickled. Load it anywhere memtune is installed:

    mlflow.pyfunc.load_model("models:/<name>/<version>").predict([{"op": "search", "query": "...", "user_id": "u"}])

(see optimize/export/pyfunc_model.py for the request format). The registry is the tracking store (sqlite by default:
conf/tracking/mlflow.yaml). Set LITELLM_LOCAL_MODEL_COST_MAP=True before importing mlflow offline.
"""

from __future__ import annotations

import os
import warnings
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # mlflow (via litellm) hangs offline without it

from ...policies.runtime.bundle import read_bundle
from ..sweep.tracking import absolute_sqlite

MODEL_CODE = Path(__file__).resolve().parent / "pyfunc_model.py"


def register_bundle(
    bundle_dir: str | os.PathLike,
    model_name: str,
    *,
    tracking_uri: str,
    experiment: str = "memtune-models",
    artifact_location: str | None = None,
    store_uri: str | None = None,
    cache_dir: str | None = None,
) -> dict:
    """Log `bundle_dir` as a pyfunc model in a new run of `experiment` and register it as `model_name`.

    Returns {"model_uri": "models:/<name>/<version>", "name", "version", "run_id", "bundle_version"}.
    store_uri: where the served model keeps memories (default at load time: $MEMTUNE_STORE_URI, else a temp dir)."""
    import mlflow

    info = read_bundle(bundle_dir)  # a broken bundle fails here, before anything is logged
    uri = absolute_sqlite(tracking_uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        location = Path(artifact_location).resolve().as_uri() if artifact_location else None
        experiment_id = client.create_experiment(experiment, artifact_location=location)
    else:
        experiment_id = found.experiment_id
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"export-{info.version}") as run:
        mlflow.set_tags(
            {
                "memtune.role": "export",
                "memtune.bundle_version": info.version,
                "memtune.source": info.source.get("kind", ""),
            }
        )
        mlflow.log_params(
            {
                "bundle_version": info.version,
                "policy": info.name,
                "embedder_id": info.embedder_id,
                "schema_version": info.schema_version,
                "source": str(info.source)[:6000],
            }
        )
        mlflow.log_dict(info.scores, "scores.json")
        with warnings.catch_warnings():  # predict() has no type hints on purpose (see pyfunc_model.py)
            warnings.filterwarnings("ignore", message=".*type hints to the `predict` method.*")
            logged = mlflow.pyfunc.log_model(
                name="policy",
                python_model=str(MODEL_CODE),
                artifacts={"bundle": str(Path(info.path))},
                model_config={"store_uri": store_uri or "", "cache_dir": cache_dir or ""},
                pip_requirements=[_requirement()],
                registered_model_name=model_name,
            )
    registered = logged.registered_model_version  # an int in mlflow 3.17 (a ModelVersion in some releases)
    registered = getattr(registered, "version", registered)
    model_version = str(registered) if registered is not None else _latest(client, model_name, run.info.run_id)
    client.set_model_version_tag(model_name, model_version, "memtune.bundle_version", info.version)
    client.update_model_version(
        model_name, model_version, description=f"memtune policy bundle {info.version} ({info.scores.get('note', '')})"
    )
    return {
        "model_uri": f"models:/{model_name}/{model_version}",
        "name": model_name,
        "version": model_version,
        "run_id": run.info.run_id,
        "bundle_version": info.version,
    }


def _latest(client, name: str, run_id: str) -> str:
    versions = [v for v in client.search_model_versions(f"name = '{name}'") if v.run_id == run_id]
    if not versions:
        raise RuntimeError(f"model {name!r} was logged but no registered version points at run {run_id}")
    return str(max(int(v.version) for v in versions))


def _requirement() -> str:
    """The serving environment needs memtune itself (the runtime policy; no tuning extras)."""
    try:
        return f"memtune=={dist_version('memtune')}"
    except PackageNotFoundError:
        return "memtune"
