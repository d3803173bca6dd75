"""Notebook parameters: one spec per notebook, checked in the cell right after `parameters`.

Papermill only *warns* about a parameter the notebook does not declare and injects any value
it is given. `setup(NOTEBOOK, globals())` closes that gap: it fails the notebook at once with
a one-line `ParameterError` for an unknown name, a value of the wrong type or an unknown task,
then fills every parameter left at None from the profile and returns a `NotebookRun`.

Every parameter name is a field of a library config dataclass (so the same word means the
same thing in the CLI, the config and the notebook): `StudyConfig` below (profile, study_dir,
out, member), `EvalConfig`, `TrainConfig`, `DistillConfig`, `QuantConfig`, `ViewerConfig`.
A value is checked as the CLI and `--set` check it: its type by the one typed coercion
(tdmpc_lib.typed.coerce, from the field's annotation), its range and choices by the owning
dataclass's own `validate()`.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import platform
import types
import typing
from dataclasses import dataclass
from pathlib import Path

from ..choices import ProfileName, StudyQuantFormat, TransferArm, options
from ..evaluate import EvalConfig
from ..files import atomic_write_json
from ..train.config import DistillConfig, TrainConfig
from ..typed import coerce
from .profiles import ParameterError, Profile, QuantConfig, ViewerConfig, check_checkpoint_spec, check_profile
from .profiles import load_profile

RESULT_FILE = "result.json"
QUANT_FORMATS = options(StudyQuantFormat)


@dataclass
class StudyConfig:
    """Parameters every notebook has.
    profile: smoke | mini | paper. study_dir: the study's folder (None: runs/<profile>).
    out: this execution's folder (None: <study_dir>/<notebook>[/<member>]). member: the sweep
    member's name when the runner executes a sweep (None: a single run)."""
    profile: ProfileName = "mini"
    study_dir: str | None = None
    out: str | None = None
    member: str | None = None
    arm: TransferArm = "reward"  # 02: reward (the paper's, d_coef), value, policy or all (pipeline.arm_distill)


# name -> (config class whose field gives the type, profile key for the default or None)
_COMMON = {"profile": (StudyConfig, None), "study_dir": (StudyConfig, None), "out": (StudyConfig, None),
           "member": (StudyConfig, None), "device": (TrainConfig, "device"), "threads": (TrainConfig, "threads")}
_TRAIN = {"teacher": (DistillConfig, "teacher"), "student_size": (TrainConfig, "train.student_size"),
          "d_coef": (DistillConfig, "train.distill.d_coef"), "schedule": (DistillConfig, "train.distill.schedule"),
          "batch_size": (TrainConfig, "train.batch_size"), "steps": (TrainConfig, "train.steps"),
          "seed": (TrainConfig, "eval.seed"), "eval_freq": (TrainConfig, None)}
NOTEBOOKS: dict[str, dict[str, tuple[type, str | None]]] = {
    "01_teacher": {**_COMMON, "teacher": (DistillConfig, "teacher"), "tasks": (EvalConfig, "eval.tasks"),
                   "episodes": (EvalConfig, "teacher_episodes"), "seed": (EvalConfig, "eval.seed"),
                   "protocol": (EvalConfig, "eval.protocol"), "policy": (EvalConfig, "eval.policy"),
                   "precision": (EvalConfig, "teacher_precision")},
    "02_distillation": {**_COMMON, **_TRAIN, "arm": (StudyConfig, None)},
    "03_latent_ablation": {**_COMMON, **_TRAIN, "latent": (DistillConfig, None),
                           "latent_coef": (DistillConfig, "train.distill.latent_coef"),
                           "pca_samples": (DistillConfig, "train.distill.pca_samples")},
    "04_quantization": {**_COMMON, "checkpoint": (QuantConfig, "quant.checkpoint"),
                        "formats": (QuantConfig, "quant.formats"), "tasks": (EvalConfig, "eval.tasks"),
                        "episodes": (EvalConfig, "eval.episodes"), "seed": (EvalConfig, "eval.seed"),
                        "error_batch": (QuantConfig, "quant.error_batch"),
                        "latency_envs": (QuantConfig, "quant.latency_envs"),
                        "latency_repeats": (QuantConfig, "quant.latency_repeats")},
    "05_results": {**_COMMON, "figures_dir": (Profile, "figures_dir")},
    "06_rollout_viewer": {**_COMMON, **{k: (ViewerConfig, f"viewer.{k}") for k in
                                        ("checkpoint", "compare", "task", "seed", "policy", "steps", "width",
                                         "height", "camera_id", "fps")}},
}
# Defaults that are not a profile field.
_SPECIAL_DEFAULTS = {"latent": "none", "arm": "reward"}
_IGNORED = {"In", "Out", "get_ipython", "exit", "quit", "open"}
_PLAIN = (str, int, float, bool, type(None), list, tuple)
_DONE_MARK = "_study_setup_done"


# ---------------------------------------------------------------------------- types
def parameter_type(notebook: str, name: str):
    cls, _ = NOTEBOOKS[notebook][name]
    tp = typing.get_type_hints(cls)[name]
    return tp | None  # None always means "the profile's value"


# ---------------------------------------------------------------------------- values
# A valid instance of each config class; a parameter's value is checked by that class's own
# validate() on this instance with the one field replaced (DistillConfig: with a teacher, so the
# latent and cache rules apply as they do in a run).
_BASELINES = {TrainConfig: lambda: TrainConfig(data="<the study's data>"),
              DistillConfig: lambda: DistillConfig(teacher="<the teacher>"),
              EvalConfig: EvalConfig, QuantConfig: QuantConfig, ViewerConfig: ViewerConfig}


def _parameter_error(name: str, message: str) -> ParameterError:
    """`parameter 'x' ...`: the dataclass's message, which starts with the field's name."""
    head = f"{name} "
    rest = message[len(head):] if message.startswith(head) else f": {message}"
    return ParameterError(f"parameter {name!r}{' ' if not rest.startswith(':') else ''}{rest}")


def check_field(cls, name: str, value) -> None:
    """`value` of field `name` of config class `cls` passes that class's validate()."""
    make = _BASELINES.get(cls)
    if make is None or value is None:
        return
    try:
        obj = make()
        if isinstance(obj, (QuantConfig, ViewerConfig)):  # frozen
            obj = type(obj)(**{**obj.__dict__, name: value})
        else:
            setattr(obj, name, value)
        obj.validate()
    except ValueError as e:
        raise _parameter_error(name, str(e)) from None


def _normalize_tasks(spec: str) -> str:
    return "mt30" if spec.strip().lower() == "mt30" else ",".join(t.strip() for t in spec.split(",") if t.strip())


def check_values(values: dict, notebook: str | None = None) -> None:
    """Checks beyond the type, by the dataclass that owns each parameter (ranges, choices, task
    names given once), plus the device and the checkpoints the parameters name."""
    specs = [NOTEBOOKS[notebook]] if notebook else list(NOTEBOOKS.values())
    v = values
    for name, value in list(v.items()):
        cls = next((spec[name][0] for spec in specs if name in spec), None)
        if value is None or cls is None or name in ("teacher", "checkpoint", "compare", "device"):
            continue
        check_field(cls, name, value)
        if name == "tasks":
            v[name] = _normalize_tasks(value)
    if v.get("device") is not None:
        from ..device import resolve_device
        try:
            resolve_device(v["device"])
        except ValueError as e:
            raise ParameterError(f"parameter 'device': {e}") from None
    if "teacher" in v:
        check_checkpoint_spec("teacher", v["teacher"], allow_train=True)
    if "checkpoint" in v:
        check_checkpoint_spec("checkpoint", v["checkpoint"], allow_train=False)
    if v.get("compare") not in (None, "none", "teacher"):  # the viewer's second checkpoint
        check_checkpoint_spec("compare", v["compare"], allow_train=False)


def validate(notebook: str, namespace: dict) -> dict:
    """The notebook's parameters from its namespace, checked: unknown names, types, values.
    Returns {name: value} for every declared parameter (None = not given)."""
    if notebook not in NOTEBOOKS:
        raise ParameterError(f"unknown notebook {notebook!r}; known: {', '.join(NOTEBOOKS)}")
    spec = NOTEBOOKS[notebook]
    # Parameters are plain values; anything else in the namespace (modules, functions, objects
    # made by later cells) is not a parameter.
    given = {k: v for k, v in namespace.items()
             if not k.startswith("_") and k not in _IGNORED and isinstance(v, _PLAIN)}
    unknown = set(given) - set(spec)
    first = namespace.get(_DONE_MARK)
    if isinstance(first, (set, frozenset)):
        # This cell ran before in this kernel (JupyterLab): values made by later cells are not
        # parameters; only names that existed at the first check still count.
        unknown &= first
    if unknown:
        unknown = sorted(unknown)
        raise ParameterError(f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                             f"for {notebook}; its parameters are {', '.join(spec)}")
    try:
        values = {name: coerce(f"parameter {name!r}", given.get(name), parameter_type(notebook, name))
                  for name in spec}
    except ValueError as e:
        raise ParameterError(str(e)) from None
    if values["profile"] is None:
        raise ParameterError(f"parameter 'profile' must be one of {', '.join(options(ProfileName))}, got None")
    check_values(values, notebook)
    return values


# ---------------------------------------------------------------------------- the run
def profile_default(profile: Profile, key: str | None):
    obj = profile
    for part in (key or "").split("."):
        obj = getattr(obj, part) if part else obj
    return obj


def fingerprint(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


DESCRIPTIVE_FIELDS = ("summary", "caveat", "expected_cost")


def profile_fingerprint(profile: Profile) -> str:
    """Fingerprint of the fields that change results (not the profile's descriptions)."""
    d = profile.to_dict()
    for k in DESCRIPTIVE_FIELDS:
        d.pop(k, None)
    return fingerprint(d)


class NotebookRun:
    """What a notebook needs after its parameters are checked: the resolved values (`p`),
    the profile, the study folder, this execution's output folder, and result writers."""

    def __init__(self, notebook: str, values: dict, profile: Profile, study_dir: Path, out: Path, given: dict):
        self.notebook, self.profile, self.study_dir, self.out = notebook, profile, study_dir, out
        self.values, self.given = values, given
        self.p = types.SimpleNamespace(**values)
        self.started = datetime.datetime.now().isoformat(timespec="seconds")

    def __repr__(self) -> str:
        rows = [f"{self.notebook}  ({self.profile.label()})", f"  study folder     {self.study_dir}",
                f"  this run's out   {self.out}"]
        for k, v in self.values.items():
            if k in ("profile", "study_dir", "out") or (k == "member" and v is None):
                continue
            src = "given" if self.given.get(k) is not None else "profile"
            rows.append(f"  {k:<17}{v!r:<40} ({src})")
        return "\n".join(rows)

    def path(self, name: str) -> Path:
        return self.out / name

    def save_json(self, name: str, obj) -> Path:
        path = self.out / name
        return atomic_write_json(path, obj)

    def finish(self, result: dict) -> Path:
        """Write result.json last: its presence means this execution completed (the runner
        skips executions whose result.json records the same parameters)."""
        record = {"notebook": self.notebook, "parameters": self.values, "profile": self.profile.name,
                  "profile_fingerprint": profile_fingerprint(self.profile), "started": self.started,
                  "finished": datetime.datetime.now().isoformat(timespec="seconds"),
                  "host": platform.node(), **result}
        return self.save_json(RESULT_FILE, record)


def study_root() -> Path:
    """Where the study's relative paths (runs/, figures/) live: the checkout the package is
    installed from (`pip install -e .`), whichever folder JupyterLab or a kernel started in;
    for an installed copy outside a checkout, the working directory."""
    checkout = Path(__file__).resolve().parents[2]
    return checkout if (checkout / "notebooks").is_dir() else Path.cwd()


def default_study_dir(profile: str) -> Path:
    return study_root() / "runs" / profile


def setup(notebook: str, namespace: dict) -> NotebookRun:
    """Check the notebook's parameters (one-line ParameterError on a bad one), fill the rest
    from the profile, set torch's thread count and create the output folder."""
    given = validate(notebook, namespace)
    study_dir = Path(given["study_dir"]) if given["study_dir"] else default_study_dir(given["profile"])
    try:
        profile = load_profile(given["profile"], study_dir)
    except ValueError as e:
        raise ParameterError(str(e)) from None
    values = {}
    for name, (_, key) in NOTEBOOKS[notebook].items():
        value = given[name]
        if value is None and key is not None:
            value = profile_default(profile, key)
        if value is None and name in _SPECIAL_DEFAULTS:
            value = _SPECIAL_DEFAULTS[name]
        values[name] = value
    check_values(values, notebook)  # the profile's values too (e.g. from an edited profile.json)
    values["study_dir"] = str(study_dir)
    out = Path(given["out"]) if given["out"] else study_dir / notebook / (given["member"] or "")
    values["out"] = str(out)
    if values.get("threads"):
        import torch
        torch.set_num_threads(int(values["threads"]))
    out.mkdir(parents=True, exist_ok=True)
    if not isinstance(namespace.get(_DONE_MARK), (set, frozenset)):
        namespace[_DONE_MARK] = frozenset(k for k, v in namespace.items()
                                          if not k.startswith("_") and isinstance(v, _PLAIN))
    return NotebookRun(notebook, values, profile, study_dir, out, given)


def read_result(out: str | Path) -> dict | None:
    path = Path(out) / RESULT_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
