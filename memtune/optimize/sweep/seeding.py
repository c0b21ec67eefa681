"""A sampler seeded by the number of the trial it samples, so workers that start trials at the same moment do not
propose the same knobs.

The sweep used to seed each worker's sampler with `seed + the number of trials so far`: two workers reading the
same count (they start together, or finish trials together) got the same seed and so the same random start-up
proposals, and the study evaluated one knob set twice. A trial number is given out once by the storage, so
`seed + trial.number` differs between workers and stays reproducible for one process (trial n always gets the
same seed) and on resume (no replay of earlier trials' proposals).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState


class TrialSeeded(BaseSampler):
    """`make(trial_number)` builds the sampler for each trial (the configured one, its seed shifted by the number)."""

    def __init__(self, make: Callable[[int], BaseSampler]):
        self._make = make
        self.inner = make(0)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.inner = self._make(trial.number)
        self.inner.before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self.inner.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self.inner.sample_relative(study, trial, search_space)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self.inner.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self.inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()
