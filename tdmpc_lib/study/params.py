"""Notebook parameters: one spec per notebook, checked in the cell right after `parameters`.

Papermill only *warns* about a parameter the notebook does not declare and injects any value
it is given. `setup(NOTEBOOK, globals())` closes that gap: it fails the notebook at once with
a one-line `ParameterError` for an unknown name, a value of the wrong type or an unknown task,
then fills every parameter left at None from the profile and returns a `NotebookRun`.

Every parameter name is a field of a library config dataclass (so the same word means the
same thing in the CLI, the config and the notebook): `StudyConfig` below (profile, study_dir,
out, member), `EvalConfig`, `TrainConfig`, `DistillConfig`, `QuantConfig`, `ViewerConfig`.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import math
import platform
import types
import typing
from dataclasses import dataclass
from pathlib import Path

from ..files import atomic_write_json
from ..evaluate import POLICIES, PRECISIONS, PROTOCOLS, EvalConfig
from ..tasks import MT30
from ..train.config import LATENT_MODES, SCHEDULES, DistillConfig, TrainConfig
from .profiles import Profile, QuantConfig, ViewerConfig, load_profile, parse_mixture_entry

RESULT_FILE = "result.json"
QUANT_FORMATS = ("fp16", "bf16", "int8", "paper-int8", "paper-mixed")


class ParameterError(ValueError):
    """A bad notebook parameter. Shown by IPython as its one-line message, no traceback."""

    def _render_traceback_(self) -> list[str]:  # IPython uses this instead of a traceback
        return [f"ParameterError: {self}"]


@dataclass
class StudyConfig:
    """Parameters every notebook has.
    profile: smoke | mini | paper. study_dir: the study's folder (None: runs/<profile>).
    out: this execution's folder (None: <study_dir>/<notebook>[/<member>]). member: the sweep
    member's name when the runner executes a sweep (None: a single run)."""
    profile: str = "mini"
    study_dir: str | None = None
    out: str | None = None
    member: str | None = None


# name -> (config class whose field gives the type, profile key for the default or None)
_COMMON = {"profile": (StudyConfig, None), "study_dir": (StudyConfig, None), "out": (StudyConfig, None),
           "member": (StudyConfig, None), "device": (TrainConfig, "device"), "threads": (TrainConfig, "threads")}
_TRAIN = {"teacher": (DistillConfig, "teacher"), "student_size": (TrainConfig, "student_size"),
          "d_coef": (DistillConfig, "d_coef"), "schedule": (DistillConfig, "schedule"),
          "batch_size": (TrainConfig, "batch_size"), "steps": (TrainConfig, "steps"),
          "seed": (TrainConfig, "seed"), "eval_freq": (TrainConfig, None)}
NOTEBOOKS: dict[str, dict[str, tuple[type, str | None]]] = {
    "01_teacher": {**_COMMON, "teacher": (DistillConfig, "teacher"), "tasks": (EvalConfig, "tasks"),
                   "episodes": (EvalConfig, "teacher_episodes"), "seed": (EvalConfig, "seed"),
                   "protocol": (EvalConfig, "protocol"), "policy": (EvalConfig, "policy"),
                   "precision": (EvalConfig, "teacher_precision")},
    "02_distillation": {**_COMMON, **_TRAIN},
    "03_latent_ablation": {**_COMMON, **_TRAIN, "latent": (DistillConfig, None),
                           "latent_coef": (DistillConfig, "latent_coef"),
                           "pca_samples": (DistillConfig, "pca_samples")},
    "04_quantization": {**_COMMON, "checkpoint": (QuantConfig, "quant.checkpoint"),
                        "formats": (QuantConfig, "quant.formats"), "tasks": (EvalConfig, "tasks"),
                        "episodes": (EvalConfig, "episodes"), "seed": (EvalConfig, "seed"),
                        "error_batch": (QuantConfig, "quant.error_batch"),
                        "latency_envs": (QuantConfig, "quant.latency_envs"),
                        "latency_repeats": (QuantConfig, "quant.latency_repeats")},
    "05_results": {**_COMMON, "figures_dir": (Profile, "figures_dir")},
    "06_rollout_viewer": {**_COMMON, **{k: (ViewerConfig, f"viewer.{k}") for k in
                                        ("checkpoint", "compare", "task", "seed", "policy", "steps", "width",
                                         "height", "camera_id", "fps")}},
}
# Defaults that are not a profile field.
_SPECIAL_DEFAULTS = {"latent": "none"}
_IGNORED = {"In", "Out", "get_ipython", "exit", "quit", "open"}
_PLAIN = (str, int, float, bool, type(None), list, tuple)
_DONE_MARK = "_study_setup_done"


# ---------------------------------------------------------------------------- types
def _type_name(tp) -> str:
    if tp is type(None):
        return "None"
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is tuple:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if typing.get_origin(tp) is typing.Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(tp)))
    return getattr(tp, "__name__", str(tp))


def check_value(name: str, value, tp):
    """`value` as type `tp` (int is accepted for float, a list for a tuple); else a one-line
    ParameterError naming the parameter, the expected type and what was given."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return check_value(name, value, arg)
            except ParameterError:
                pass
    elif tp is type(None):
        if value is None:
            return None
    elif origin is typing.Literal:
        if value in typing.get_args(tp):
            return value
        raise ParameterError(f"parameter {name!r} must be one of {', '.join(map(repr, typing.get_args(tp)))}, "
                             f"got {value!r}")
    elif origin is tuple:
        if isinstance(value, (list, tuple)):
            inner = typing.get_args(tp)[0]
            return tuple(check_value(name, v, inner) for v in value)
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ParameterError(f"parameter {name!r} must be {_type_name(tp)}, got {type(value).__name__} {value!r}")


def parse_text(text: str, tp, name: str):
    """A command-line string as type `tp` ('none' -> None, 'a,b' -> a tuple)."""
    text = text.strip()
    args = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
    if text.lower() in ("none", "null") and type(None) in args:
        return None
    for arg in args:
        try:
            if typing.get_origin(arg) is tuple:
                inner = typing.get_args(arg)[0]
                return tuple(parse_text(t, inner, name) for t in text.split(",") if t.strip())
            if arg is bool:
                if text.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
                    return text.lower() in ("true", "1", "yes", "on")
                continue
            if arg in (int, float):
                return arg(text)
            if arg is str:
                return text
        except (ValueError, ParameterError):
            continue
    raise ParameterError(f"{name}={text!r}: expected {_type_name(tp)}")


def parameter_type(notebook: str, name: str):
    cls, _ = NOTEBOOKS[notebook][name]
    tp = typing.get_type_hints(cls)[name]
    return tp | None  # None always means "the profile's value"


# ---------------------------------------------------------------------------- values
def _check_tasks(name: str, spec: str) -> str:
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if spec.strip().lower() == "mt30":
        return "mt30"
    if not names:
        raise ParameterError(f"parameter {name!r} is empty; give 'mt30' or comma-separated MT30 task names")
    for t in names:
        if t not in MT30.tasks:
            raise ParameterError(f"unknown task {t!r} in parameter {name!r}; MT30 tasks are "
                                 f"{', '.join(MT30.tasks)}")
    return ",".join(names)


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ParameterError(f"parameter {name!r} must be one of {', '.join(map(str, choices))}, got {value!r}")


def check_checkpoint_spec(name: str, value: str | None, allow_train: bool) -> None:
    """A teacher/checkpoint: a hub name, an existing file, and for teachers 'auto'/'train:SIZE'."""
    from ..checkpoint import BUNDLED_CHECKPOINTS, HUB_CHECKPOINTS
    from ..config import PRESETS

    if value is None or value in HUB_CHECKPOINTS or value in BUNDLED_CHECKPOINTS or Path(value).is_file():
        return
    if allow_train and value == "auto":
        return
    if allow_train and value.startswith("train:"):
        size = value.split(":", 1)[1]
        size = int(size) if size.isdigit() else size
        if size in PRESETS:
            return
        raise ParameterError(f"parameter {name!r}: unknown preset in {value!r}; presets are "
                             f"{', '.join(map(str, PRESETS))}")
    extra = ", 'auto', 'train:SIZE'" if allow_train else ""
    raise ParameterError(f"parameter {name!r}: {value!r} is neither an existing checkpoint file nor a bundled or "
                         f"hub name ({', '.join([*BUNDLED_CHECKPOINTS, *HUB_CHECKPOINTS])}{extra})")


def check_values(values: dict) -> None:
    """Checks beyond the type: choices, task names, ranges, devices."""
    from ..config import PRESETS

    v = values
    for key in ("tasks",):
        if v.get(key) is not None:
            v[key] = _check_tasks(key, v[key])
    if v.get("task") is not None and v["task"] not in MT30.tasks:
        raise ParameterError(f"unknown task {v['task']!r} in parameter 'task'; MT30 tasks are {', '.join(MT30.tasks)}")
    for key, choices in (("protocol", PROTOCOLS), ("policy", POLICIES), ("precision", PRECISIONS),
                         ("schedule", SCHEDULES), ("latent", LATENT_MODES)):
        if v.get(key) is not None:
            _check_choice(key, v[key], choices)
    if v.get("formats") is not None:
        for f in v["formats"]:
            _check_choice("formats", f, QUANT_FORMATS)
    if v.get("student_size") is not None:
        size = v["student_size"]
        size = int(size) if isinstance(size, str) and size.isdigit() else size
        _check_choice("student_size", size, tuple(PRESETS))
        v["student_size"] = size
    for key in ("episodes", "steps", "batch_size", "error_batch", "latency_envs", "latency_repeats", "width",
                "height", "fps", "pca_samples"):
        if v.get(key) is not None and v[key] < 1:
            raise ParameterError(f"parameter {key!r} must be at least 1, got {v[key]}")
    for key in ("d_coef", "latent_coef", "threads", "eval_freq", "camera_id"):
        if v.get(key) is not None and not (math.isfinite(v[key]) and v[key] >= 0):
            raise ParameterError(f"parameter {key!r} must be a finite number >= 0, got {v[key]}")
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


def check_profile(profile: Profile) -> None:
    """The profile's values make sense (tasks exist, choices are known, teachers resolvable):
    a one-line ParameterError naming the field otherwise. The device is checked where it is
    used (a GPU profile can be listed and edited on a CPU machine)."""
    from .profiles import DATA_SOURCES

    p = profile
    try:
        check_values({"tasks": p.tasks, "protocol": p.protocol, "policy": p.policy, "precision": p.precision,
                      "schedule": p.schedule, "student_size": p.student_size, "episodes": p.episodes,
                      "steps": p.steps, "batch_size": p.batch_size, "pca_samples": p.pca_samples,
                      "latent_coef": p.latent_coef, "d_coef": p.d_coef, "formats": p.quant.formats,
                      "task": p.viewer.task, "error_batch": p.quant.error_batch,
                      "latency_envs": p.quant.latency_envs, "latency_repeats": p.quant.latency_repeats,
                      "width": p.viewer.width, "height": p.viewer.height, "fps": p.viewer.fps,
                      "compare": p.viewer.compare})
        for t in (p.teacher, *p.compare_teachers):
            check_checkpoint_spec("teacher", t, allow_train=True)
        _check_choice("viewer.policy", p.viewer.policy, ("prior", "plan"))
        for d in p.d_coefs:
            if not (math.isfinite(d) and d >= 0):
                raise ParameterError(f"profile field 'd_coefs' holds {d}; coefficients are finite numbers >= 0")
        if len(set(p.d_coefs)) != len(p.d_coefs) or len(set(p.seeds)) != len(p.seeds):
            raise ParameterError("profile fields 'd_coefs' and 'seeds' must not repeat a value")
        for mode in p.latent_modes:
            _check_choice("latent_modes", mode, tuple(m for m in LATENT_MODES if m != "none"))
        if not p.seeds:
            raise ParameterError("profile field 'seeds' is empty")
        _check_choice("data.source", p.data.source, DATA_SOURCES)
        if p.data.source == "collect" or p.data.heldout:
            _check_tasks("data.tasks", p.data.tasks)
        entries = (p.data.mixture if p.data.source == "collect" else ()) + p.data.heldout
        for entry in entries:
            try:
                policy, _ = parse_mixture_entry(entry)
            except ValueError as e:
                raise ParameterError(str(e)) from None
            if policy != "random" and (p.teacher == "auto" or p.teacher.startswith("train:")):
                raise ParameterError(f"data entry {entry!r} is collected by the teacher, so 'teacher' must be a "
                                     f"checkpoint file, a bundled or a hub name, not {p.teacher!r} (a teacher "
                                     f"trained here needs the data first)")
        for key in ("episodes", "heldout_episodes"):
            if getattr(p.data, key) < 1:
                raise ParameterError(f"profile field 'data.{key}' must be at least 1, got {getattr(p.data, key)}")
        if p.teacher_episodes < 1:
            raise ParameterError(f"profile field 'teacher_episodes' must be at least 1, got {p.teacher_episodes}")
        _check_choice("teacher_precision", p.teacher_precision, PRECISIONS)
        if not (0 < p.lr < 1):
            raise ParameterError(f"profile field 'lr' must lie in (0, 1), got {p.lr}")
        pc = p.planner
        if min(pc.horizon, pc.iterations, pc.num_samples, pc.num_elites) < 1 or pc.num_pi_trajs < 0:
            raise ParameterError("profile field 'planner': horizon, iterations, num_samples and num_elites must be "
                                 "at least 1 and num_pi_trajs at least 0")
        if not pc.num_pi_trajs < pc.num_samples or pc.num_elites > pc.num_samples:
            raise ParameterError(f"profile field 'planner': need num_pi_trajs < num_samples and num_elites <= "
                                 f"num_samples, got {pc.num_pi_trajs}, {pc.num_samples}, {pc.num_elites}")
    except ParameterError as e:
        raise ParameterError(f"profile '{p.name}': {e}") from None


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
    values = {name: check_value(name, given.get(name), parameter_type(notebook, name)) for name in spec}
    if values["profile"] is None:
        raise ParameterError("parameter 'profile' must be one of smoke, mini, paper, got None")
    from .profiles import PROFILES
    _check_choice("profile", values["profile"], tuple(PROFILES))
    check_values(values)
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
    check_values(values)  # the profile's values too (e.g. from an edited profile.json)
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
