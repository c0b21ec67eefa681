"""Workers that start together on a new study: exactly one creates it and enqueues its first trials.

`optuna.create_study(load_if_exists=True)` cannot say whether this worker created the study, so every worker that
found no signature on it claimed it and enqueued `sweep.enqueue` again: two workers started together ran the
default policy twice. Here the storage's unique study name decides: the worker whose `create_new_study`
succeeds is the creator; the others wait for the creator's signature before they check theirs against it (a
creator that died before writing it is replaced after `wait` seconds: the joiner claims the study itself).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import optuna
from optuna.study import StudyDirection


def create_or_join(storage: optuna.storages.BaseStorage, name: str, directions: Sequence[str]) -> bool:
    """True when this worker created the study, False when it already existed."""
    try:
        storage.create_new_study([StudyDirection[d.upper()] for d in directions], name)
        return True
    except optuna.exceptions.DuplicatedStudyError:
        return False


def wait_for_signature(study: optuna.Study, wait: float = 60.0, poll: float = 0.5) -> bool:
    """Wait until the study's creator has recorded its signature; False after `wait` seconds without one."""
    deadline = time.monotonic() + wait
    while "signature" not in study.user_attrs:
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)
    return True
