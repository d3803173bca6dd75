"""Every setting of the study's training and evaluation configs reaches the run, by each way in:
`--set KEY=VALUE` (the study's command line), a notebook's `overrides` parameter (papermill) and
the API (`Profile.replace`). A value arrives in the TrainConfig handed to the trainer, the
EvalConfig handed to the evaluator, and the config.json and result.json the run saves. The
cases are generated from the dataclass fields (TrainConfig with its DistillConfig, EvalConfig
with its PlannerConfig), not written by hand, so a new field is covered the day it is added."""
import json
import types
import typing
from pathlib import Path

import pytest

from tdmpc_lib.study import pipeline, profiles
from tdmpc_lib.study.__main__ import StudyCommand  # noqa: F401  (the --set entry point's module)
from tdmpc_lib.train.config import TrainConfig
from tdmpc_lib.typed import field_names, field_type

# Fields a study run sets itself, and where their value comes from instead.
SET_PER_RUN = {
    "data": "the study's dataset", "out": "the run folder", "device": "profile.device",
    "threads": "profile.threads", "eval_freq": "sweep.eval_points", "eval_final": "run_student",
    "checkpoint_freq": "the run's length", "keep_checkpoints": "the run's length", "log_freq": "the run's length",
    "progress": "the runner", "resume": "the runner", "distill.teacher": "teacher.checkpoint",
    "distill.cache": "teacher.cache",
}
# Fields the papermill leg leaves at their defaults (the other legs cover them): they need what a
# test machine lacks (a checkpoint to start from, a Weights & Biases account, minutes of
# torch.compile, minutes of MPPI planning for the evaluations of 'plan').
NEEDS_RESOURCES = {"init", "wandb_project", "compile", "policy"}
# str fields have no generic second value.
STRINGS = {"init": "runs/some-run/model.pt", "wandb_project": "my-project", "tasks": "reacher-easy",
           "teacher_device": "cpu"}
MEMBER = "all_s1"  # the smoke member with every distillation term on


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
        obj = obj[part] if isinstance(obj, dict) else getattr(obj, part)
    return obj


TRAIN_KEYS = [k for k in field_names(TrainConfig) if not k.startswith("eval.") and k not in SET_PER_RUN]
EVAL_KEYS = [k for k in field_names(profiles.EvalConfig) if k != "device"]
SMOKE_RUN = profiles.SMOKE.replace(**profiles.sweep_members(profiles.SMOKE)["02_distillation"][MEMBER])


def case(key: str) -> tuple[str, object]:
    """(profile key, generated value) of a TrainConfig ('train.lr') or EvalConfig ('eval.seed') key."""
    section, rest = key.split(".", 1)
    cls = TrainConfig if section == "train" else profiles.EvalConfig
    return key, other_value(rest, field_type(cls, rest), _get(_get(SMOKE_RUN, section), rest))


CASES = [case(f"train.{k}") for k in TRAIN_KEYS] + [case(f"eval.{k}") for k in EVAL_KEYS]


def as_text(value) -> str:
    return "none" if value is None else str(value)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The smoke profile's data and teacher, made once; student_config only reads them."""
    study_dir = tmp_path_factory.mktemp("roundtrip")
    pipeline.student_config(SMOKE_RUN, study_dir)
    return study_dir


def test_the_generated_cases_cover_every_field():
    """Every TrainConfig field is a case, set per run (a real field: the list cannot go stale) or
    one of the evaluation's (TrainConfig.eval, checked through the profile's eval)."""
    train = set(field_names(TrainConfig))
    assert set(SET_PER_RUN) <= train and NEEDS_RESOURCES <= set(TRAIN_KEYS) | set(EVAL_KEYS)
    assert set(TRAIN_KEYS) | set(SET_PER_RUN) | {f"eval.{k}" for k in EVAL_KEYS} | {"eval.device"} == train
    assert {"lr", "tau", "horizon", "precision", "seed", "distill.all_steps", "distill.q_coef", "distill.d_coef",
            "distill.latent", "distill.detach_encoder"} <= set(TRAIN_KEYS)
    assert {"episodes", "env_workers", "max_batch_envs", "planner.num_samples", "planner.temperature"} <= set(EVAL_KEYS)


def _arrives(cfg: TrainConfig, evaluated: profiles.EvalConfig, key: str, value) -> None:
    section, rest = key.split(".", 1)
    if section == "train":
        assert _get(cfg, rest) == value, key
        assert _get(TrainConfig.from_dict(cfg.to_dict()), rest) == value, key  # config.json, and a resume
    else:
        assert _get(evaluated, rest) == value, key  # final evaluations, teacher, quantized models
        assert _get(cfg.eval, rest) == value, key  # the evaluations during a run (learning curves)


@pytest.mark.parametrize("key, value", CASES, ids=[k for k, _ in CASES])
def test_set_and_api_reach_the_trainer_and_the_evaluator(study, monkeypatch, key, value):
    """--set's parse, then the API's replace, then the configs run_student hands to train() and
    evaluate() (both stopped right there)."""
    import tdmpc_lib.train

    parsed = profiles.parse_override(SMOKE_RUN, f"{key}={as_text(value)}")
    assert parsed == (key, value)
    prof = SMOKE_RUN.replace(**dict([parsed]))
    cfg, info = pipeline.student_config(prof, study)
    handed = {}

    class Stop(Exception):
        pass

    def fake_train(c):
        handed["train"] = c
        return {"model": "m.pt", "steps": c.steps}

    def fake_evaluate(model, c, progress=False):
        handed["eval"] = c
        raise Stop

    monkeypatch.setattr(tdmpc_lib.train, "train", fake_train)
    monkeypatch.setattr(pipeline, "evaluate", fake_evaluate)
    monkeypatch.setattr("tdmpc_lib.checkpoint.load_checkpoint", lambda *a, **k: None)
    monkeypatch.setattr("tdmpc_lib.checkpoint.cached_file_sha256", lambda *a, **k: "0" * 64)
    # a run of the same fields (device fields aside) was made by an earlier case: train this one again
    (Path(cfg.out) / "study_run.json").unlink(missing_ok=True)
    with pytest.raises(Stop):
        pipeline.run_student(cfg, info, prof, study)
    assert handed["train"] == cfg
    _arrives(handed["train"], handed["eval"], key, value)


def _groups(cases) -> list[dict]:
    """The papermill cases in as few notebook executions as valid profiles allow."""
    groups: list[dict] = []
    for key, value in cases:
        for group in groups:
            try:
                SMOKE_RUN.replace(**group, **{key: value})
            except profiles.ParameterError:
                continue
            group[key] = value
            break
        else:
            groups.append({key: value})
    return groups


PAPERMILL = _groups([(k, v) for k, v in CASES if k.split(".", 1)[1] not in NEEDS_RESOURCES])


@pytest.mark.parametrize("overrides", PAPERMILL, ids=[f"group{i}" for i in range(len(PAPERMILL))])
def test_a_notebook_parameter_reaches_the_saved_run(study, overrides):
    """notebooks/02 under papermill with the generated values as its `overrides`: every value is
    in the resolved profile it saves (result.json), the run's config.json and final evaluation."""
    import papermill as pm

    from tdmpc_lib.study.execution import NOTEBOOK_DIR, use_this_interpreter_kernel

    use_this_interpreter_kernel()
    out = study / "02_distillation" / MEMBER
    out.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(str(NOTEBOOK_DIR / "02_distillation.ipynb"), str(out / "02.ipynb"), kernel_name="python3",
                        parameters={"profile": "smoke", "member": MEMBER, "overrides": overrides,
                                    "study_dir": str(study)}, progress_bar=False)
    result = json.loads((out / "result.json").read_text())
    run_dir = result["run"]["run_dir"]
    saved = TrainConfig.from_dict(json.loads((study / run_dir / "config.json").read_text())["train_config"])
    final = json.loads((study / run_dir / "final_eval.json").read_text())["eval_config"]
    for key, value in overrides.items():
        assert _get(result["config"], key) == (list(value) if isinstance(value, tuple) else value), key
        _arrives(saved, profiles.EvalConfig(**{k: v for k, v in final.items() if k != "planner"},
                                            planner=profiles.PlannerConfig(**final["planner"])), key, value)
