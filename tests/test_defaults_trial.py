"""The sweep's defaults trial is derived from the base config (optimize/sweep/defaults_trial.py), not copied by hand:
composing trial 0's overrides over the base gives the base config back, and it follows a changed base."""

from __future__ import annotations

import warnings

import optuna
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from memtune.optimize.sweep.app import CONF_DIR
from memtune.optimize.sweep.defaults_trial import base_choices, defaults_trial, fit
from memtune.optimize.sweep.knob_deps import KnobNotSampledWarning, restrict
from memtune.optimize.sweep.scoring import objectives_from
from memtune.optimize.sweep.search_space import Knob, SearchSpace


def derive(*overrides: str):
    """(params, left, base config, trial 0's config composed from the base plus the params' overrides; None when
    some knob is left to the sampler)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("sweep", overrides=list(overrides))
        space, _ = restrict(SearchSpace.from_config(cfg.search_space), objectives_from(cfg))
        params, left = defaults_trial(space, cfg, base_choices("sweep", overrides))
        trial = None if left else compose("sweep", overrides=[*overrides, *space.overrides_for(params)])
    return params, left, cfg, trial


def plain(cfg) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)


def test_trial_0_of_the_offline_space_is_the_base_config():
    """The base policy since issue 14 (mem0_offline = the tuned `after` arm): every lever it turns on is enqueued with
    its own settings, the conditional knobs of the levers it leaves off (rrf_k under weighted fusion, the recency
    half-life) are not asked for."""
    params, left, base, trial = derive()
    assert params == {
        "policy/extractor": "heuristic",
        "policy.extractor.min_words": 2,
        "policy.extractor.resolve_dates": True,
        "policy/decider": "offline",  # its supersession knobs are not in the space: a LOCOMO study cannot see currency
        "policy.decider.update_threshold": 0.95,
        "policy.decider.noop_threshold": 0.95,
        "policy.retriever.top_k": 32,
        "policy.retriever.threshold": 0.3,
        "policy.retriever.hybrid": True,
        "policy.retriever.fusion": "weighted",  # rrf_k is conditional on rrf: not asked for
        "policy.retriever.keyword_weight": 0.25,
        "policy.retriever.keyword_depth": 50,
        "policy.retriever.dense_depth": 70,
        "policy.retriever.recency_weight": 0.0,  # recency off: its half-life is not asked for
        "policy.retriever.date_filter": "boost",
        "policy.retriever.date_boost": 1.75,
        "policy.retriever.dedup_threshold": 0.9,
        "policy.retriever.mmr_lambda": 0.7,
        "policy.answerer.render": "lines_date",  # the rendered context: a retrieval knob, so it is sampled and enqueued
    }  # the answerer knobs are not sampled in a recall-vs-tokens study, so they are not enqueued either
    assert left == {}
    assert plain(trial) == plain(base)  # no stand-in needed: every value is one the space holds


def test_trial_0_of_the_defaults_before_maps_a_null_threshold_through_null_as():
    """The offline defaults before issue 14 (policy=mem0_offline_v0, what the committed offline-sweep studies started
    from): no threshold (null) is enqueued as the range's lowest cut-off, every lever off."""
    params, left, base, trial = derive("policy=mem0_offline_v0")
    assert params == {
        "policy/extractor": "heuristic",
        "policy.extractor.min_words": 4,
        "policy/decider": "threshold",
        "policy.decider.update_threshold": 0.85,
        "policy.decider.noop_threshold": 0.95,
        "policy.extractor.resolve_dates": False,
        "policy.retriever.top_k": 30,
        "policy.retriever.threshold": 0.0,  # null_as: the base's null (no threshold) as the range's lowest cut-off
        "policy.retriever.hybrid": False,  # every lever off: its conditional knobs are not asked for
        "policy.retriever.recency_weight": 0.0,
        "policy.retriever.date_filter": "off",
        "policy.retriever.dedup_threshold": None,  # null is a choice (the lever off), not a stand-in
        "policy.retriever.mmr_lambda": None,
        "policy.answerer.render": "json",
    }
    assert left == {}
    assert base.policy.retriever.threshold is None and trial.policy.retriever.threshold == 0.0
    trial.policy.retriever.threshold = None  # the one documented stand-in; everything else is the base itself
    assert plain(trial) == plain(base)


def test_with_every_knob_sampled_trial_0_still_composes_back_to_the_base():
    params, left, base, trial = derive("sweep=f1")
    assert params["policy/answerer"] == "offline" and params["policy.answerer.candidates"] == 8
    assert params["policy.answerer.fresh_weight"] == 0.4
    assert params["policy.answerer.max_words"] == 6 and params["policy.answerer.join"] == 3
    assert left == {} and plain(trial) == plain(base)


@pytest.mark.parametrize(
    "change, knob, value",
    [
        ("policy.retriever.top_k=7", "policy.retriever.top_k", 7),
        ("policy.decider.update_threshold=0.75", "policy.decider.update_threshold", 0.75),
        ("policy.retriever.threshold=0.2", "policy.retriever.threshold", 0.2),
        ("policy/extractor=verbatim", "policy/extractor", "verbatim"),
    ],
)
def test_trial_0_follows_a_changed_base(change, knob, value):
    params, left, base, trial = derive(change)
    assert params[knob] == value and left == {}
    if base.policy.retriever.threshold is None:
        trial.policy.retriever.threshold = None
    assert plain(trial) == plain(base)


def test_values_the_space_cannot_hold_are_left_to_the_sampler_with_why():
    params, left, _, _ = derive("policy=rag")  # chunks of 1 turn (the space has 2-4), add-only decider
    assert params["policy/extractor"] == "chunks" and params["policy/decider"] == "add_only"
    assert "policy.extractor.chunk_turns" not in params and "outside [2, 4]" in left["policy.extractor.chunk_turns"]
    params, left, _, _ = derive("policy=mem0_llm")  # an LLM extractor is not a choice of the offline space
    assert "policy/extractor" not in params and "'llm' is not one of" in left["policy/extractor"]
    assert "policy/decider" not in params and "policy.decider.update_threshold" not in params
    params, left, _, _ = derive("policy.retriever.top_k=70", "policy.decider.noop_threshold=0.97")
    assert (
        "outside [1, 50]" in left["policy.retriever.top_k"] and "off the grid" in left["policy.decider.noop_threshold"]
    )
    assert params["policy.decider.update_threshold"] == 0.95  # the rest is still the base


def test_fit_maps_null_only_through_null_as():
    knob = Knob("policy.retriever.threshold", "float", low=0.0, high=0.5, step=0.05)
    assert fit(knob, None) == (None, "the base value is null and the knob has no `null_as` in the search space")
    assert fit(Knob(**{**knob.__dict__, "null_as": 0.0}), None) == (0.0, "")
    assert fit(Knob("k", "int", low=1, high=5), True)[1] == "True is not a number"
    mmr = Knob("policy.retriever.mmr_lambda", "categorical", choices=(None, 0.5, 0.7))  # null = the lever off
    assert fit(mmr, None) == (None, "") and fit(mmr, 0.7) == (0.7, "") and fit(mmr, 0.6)[0] is None
    with pytest.raises(ValueError, match="null_as must lie in"):
        SearchSpace.from_config({"knobs": [{"target": "x", "type": "float", "low": 0.1, "high": 0.5, "null_as": 0.0}]})


def test_the_sweep_enqueues_the_derived_trial_of_its_own_command_line(tmp_path):
    base = [
        f"cache_dir={tmp_path / 'cache'}",
        "dataset=fixture",
        f"sweep.storage=sqlite:///{tmp_path / 'optuna.db'}",
        "sweep.tune_conversations=null",
        "sweep.holdout_conversations=null",
        "tracking=none",
        "policy.retriever.top_k=7",
        "sweep.enqueue=[{policy/decider: add_only}]",
    ]
    from memtune.optimize.sweep.study import Sweep

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", KnobNotSampledWarning)
            sweep = Sweep(compose("sweep", overrides=base), tmp_path / "run", base)
    first, second = sweep.study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert first.system_attrs["fixed_params"]["policy.retriever.top_k"] == 7
    assert first.system_attrs["fixed_params"]["policy/extractor"] == "heuristic"
    assert second.system_attrs["fixed_params"] == {"policy/decider": "add_only"}  # by hand, after it


def test_trial_0_of_the_llm_space_is_the_papers_llm_policy():
    """A null that the space lists as a choice (no compiled program) is a value, not a gap: the knobs that depend on
    it (the prompt variants) are enqueued too, and trial 0 composes back to policy=mem0_llm."""
    params, left, base, trial = derive("policy=mem0_llm", "lm=openai", "search_space=llm", "sweep=llm")
    assert left == {}
    assert params["policy.extractor.program"] is None and params["policy.extractor.instruction"] == "mem0"
    assert params["policy.decider.allowed_ops"] == "all" and params["policy.extractor.recent_messages"] == 10
    assert plain(trial) == plain(base)
