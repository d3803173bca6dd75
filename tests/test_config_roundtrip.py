"""Every setting of the study's training and evaluation configs reaches the run: a value set on
the profile (what `--set` and profile.json do) arrives in the TrainConfig and EvalConfig a study run
uses, and in the config.json a run saves. The cases are generated from the dataclass fields
(TrainConfig with its DistillConfig, EvalConfig with its PlannerConfig), not written by hand, so a
new field is covered the day it is added."""
import dataclasses
import types
import typing

import pytest

from tdmpc_lib.study import pipeline, profiles
from tdmpc_lib.train.config import TrainConfig
from tdmpc_lib.typed import field_names, field_type

# Fields a study run sets itself, and where their value comes from instead.
SET_PER_RUN = {
    "data": "the study's dataset", "out": "the run folder", "seed": "profile.seeds", "device": "profile.device",
    "threads": "the runner's split of the cores", "eval_freq": "profile.eval_points", "eval_final": "run_student",
    "checkpoint_freq": "the run's length", "keep_checkpoints": "the run's length", "log_freq": "the run's length",
    "progress": "the runner", "resume": "the runner", "distill.teacher": "profile.teacher",
    "distill.cache": "profile.teacher_cache", "distill.latent": "profile.latent_modes",
    "distill.d_coef": "profile.d_coefs", "distill.teacher_device": "profile.device",
}
# str fields have no generic second value.
STRINGS = {"init": "runs/some-run/model.pt", "wandb_project": "my-project", "tasks": "reacher-easy"}


def other_value(key: str, tp, default):
    """A valid value of type `tp` that differs from `default`."""
    tp = typing.get_args(tp)[0] if typing.get_origin(tp) is typing.Annotated else tp
    if typing.get_origin(tp) is typing.Literal:
        return next(a for a in typing.get_args(tp) if a != default)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        inner = next(a for a in typing.get_args(tp) if a is not type(None))
        return other_value(key, inner, default if default is not None else None)
    if tp is bool:
        return not default
    if tp is int:
        return (default or 0) + 1
    if tp is float:
        return default * 0.5 + 0.125 if default else 0.002
    if tp is str:
        return STRINGS[key.rsplit(".", 1)[-1]]
    raise AssertionError(f"no generated value for {key}: {tp}")


def _get(obj, key: str):
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


TRAIN_KEYS = [k for k in field_names(TrainConfig) if not k.startswith("eval.") and k not in SET_PER_RUN]
EVAL_KEYS = [k for k in field_names(profiles.EvalConfig) if k != "device"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The smoke profile's data and teacher, made once; student_config only reads them."""
    study_dir = tmp_path_factory.mktemp("roundtrip")
    pipeline.student_config(profiles.SMOKE, study_dir, arm="all")
    return study_dir


def test_the_generated_cases_cover_every_field():
    """Every TrainConfig field is a case, set per run (a real field: the list cannot go stale) or
    one of the evaluation's (TrainConfig.eval, checked through the profile's eval)."""
    train = set(field_names(TrainConfig))
    assert set(SET_PER_RUN) <= train
    assert set(TRAIN_KEYS) | set(SET_PER_RUN) | {f"eval.{k}" for k in EVAL_KEYS} | {"eval.device"} == train
    assert {"lr", "tau", "horizon", "precision", "distill.all_steps", "distill.q_coef", "distill.detach_encoder"} \
        <= set(TRAIN_KEYS)
    assert {"episodes", "env_workers", "max_batch_envs", "planner.num_samples", "planner.temperature"} <= set(EVAL_KEYS)


@pytest.mark.parametrize("key", TRAIN_KEYS)
def test_a_train_setting_reaches_the_run(study, key):
    value = other_value(key, field_type(TrainConfig, key), _get(TrainConfig(), key))
    try:
        prof = profiles.SMOKE.replace(**{f"train.{key}": value})
    except profiles.ParameterError as e:
        pytest.fail(f"train.{key}={value!r} refused: {e}")
    cfg, _ = pipeline.student_config(prof, study, arm="all")
    assert _get(cfg, key) == value
    assert _get(TrainConfig.from_dict(cfg.to_dict()), key) == value  # what config.json saves and resume reads


@pytest.mark.parametrize("key", EVAL_KEYS)
def test_an_eval_setting_reaches_every_evaluation(study, key):
    value = other_value(key, field_type(profiles.EvalConfig, key), _get(profiles.EvalConfig(), key))
    prof = profiles.SMOKE.replace(**{f"eval.{key}": value})
    assert _get(pipeline.eval_config(prof), key) == value  # final evaluations, teacher, quantized models
    cfg, _ = pipeline.student_config(prof, study, arm="all")
    assert _get(cfg.eval, key) == value  # the evaluations during a run (learning curves)
