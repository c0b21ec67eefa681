"""RUNNING trials that no worker claimed: made by a worker that died between creating the trial and writing its
`worker` attribute (milliseconds), or a second copy of a trial whose creation was retried after a lost reply
(storage_retry.py). Such a trial has no worker to check and no heartbeat for the RDB storage to judge, so
without this it would hold a slot of the study for ever. It is an orphan once it is older than any worker could
take to claim it: the storage retry budget plus the heartbeat grace period."""

from __future__ import annotations

import datetime as dt

from omegaconf import DictConfig
from optuna.trial import FrozenTrial, TrialState


def orphan_after(sweep_cfg: DictConfig) -> float:
    """Seconds after which an unclaimed RUNNING trial is an orphan."""
    grace = float(sweep_cfg.heartbeat.get("grace_period") or 30)
    return float(sweep_cfg.get("storage_retry_seconds", 120)) + grace


def is_orphan(trial: FrozenTrial, after: float, now: dt.datetime | None = None) -> bool:
    """A RUNNING trial without a `worker` attribute, started more than `after` seconds ago."""
    if trial.state != TrialState.RUNNING or trial.user_attrs.get("worker") or trial.datetime_start is None:
        return False
    now = now or dt.datetime.now(trial.datetime_start.tzinfo)
    return (now - trial.datetime_start).total_seconds() > after
