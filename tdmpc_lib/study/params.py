"""Notebook parameters: every notebook has the same four, checked in the cell after `parameters`.

    profile    smoke | mini | mini-takeover | paper (the study folder's profile.json when the runner wrote one)
    member     a sweep member of the notebook (`python -m tdmpc_lib.study --list` names them);
               None: the profile's own run
    overrides  {dotted profile key: value}, e.g. {"train.distill.d_coef": 0.9, "eval.episodes": 5}
    study_dir  the study's folder (None: runs/<profile>)

Papermill only *warns* about a parameter the notebook does not declare and injects any value
it is given. `setup(NOTEBOOK, globals())` closes that gap: an unknown name or a value of the
wrong type fails the notebook at once with a one-line `ParameterError`. The run's profile is
the study's with the member's changes and then the overrides applied, typed and validated once
(Profile.replace), exactly as `--set` does it.
"""
from __future__ import annotations

import datetime
import platform
from pathlib import Path

from ..choices import ProfileName, options
from ..files import atomic_write_json, fingerprint, read_json
from ..typed import leaf_values
from .profiles import ParameterError, Profile, load_profile, sweep_members

RESULT_FILE = "result.json"
PARAMETERS = {"profile": str, "member": (str, type(None)), "overrides": dict, "study_dir": (str, type(None))}
_IGNORED = {"In", "Out", "get_ipython", "exit", "quit", "open"}
_PLAIN = (str, int, float, bool, type(None), list, tuple, dict)
_DONE_MARK = "_study_setup_done"


def validate(notebook: str, namespace: dict) -> dict:
    """The notebook's four parameters from its namespace: unknown names and types checked.
    Later cells' plain values are not parameters when the cell runs again in JupyterLab."""
    given = {k: v for k, v in namespace.items()
             if not k.startswith("_") and k not in _IGNORED and isinstance(v, _PLAIN)}
    unknown = set(given) - set(PARAMETERS)
    first = namespace.get(_DONE_MARK)
    if isinstance(first, (set, frozenset)):
        unknown &= first
    if unknown:
        raise ParameterError(f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, sorted(unknown)))}"
                             f" for {notebook}; its parameters are profile, member, overrides and study_dir (a "
                             f"profile field goes in overrides, e.g. overrides = {{'train.steps': 100}})")
    values = {"profile": given.get("profile"), "member": given.get("member"),
              "overrides": given.get("overrides") or {}, "study_dir": given.get("study_dir")}
    if values["profile"] not in options(ProfileName):
        raise ParameterError(f"parameter 'profile' must be one of {', '.join(options(ProfileName))}, "
                             f"got {values['profile']!r}")
    for name, tp in PARAMETERS.items():
        if not isinstance(values[name], tp):
            raise ParameterError(f"parameter {name!r} must be a {'dict' if tp is dict else 'string or None'}, "
                                 f"got {values[name]!r}")
    bad = [k for k in values["overrides"] if not isinstance(k, str)]
    if bad:
        raise ParameterError(f"parameter 'overrides': keys are dotted profile fields ('train.steps'), got {bad[0]!r}")
    return values


def resolve(notebook: str, base: Profile, member: str | None, overrides: dict) -> Profile:
    """The profile a notebook execution runs: `base` with the member's changes, then `overrides`."""
    members = sweep_members(base).get(notebook, {})
    if member is not None and member not in members:
        known = ", ".join(members) or "none (it runs once)"
        raise ParameterError(f"{notebook} has no member {member!r} in profile '{base.name}'; its members: {known}")
    return base.replace(**{**members.get(member, {}), **overrides})


DESCRIPTIVE_FIELDS = ("summary", "caveat", "expected_cost", "threads")


def profile_fingerprint(profile: Profile) -> str:
    """Fingerprint of the fields that change results (not the descriptions or the thread count)."""
    d = profile.to_dict()
    for k in DESCRIPTIVE_FIELDS:
        d.pop(k, None)
    return fingerprint(d)


class NotebookRun:
    """A notebook execution after its parameters are checked: the study's profile (`base`), the
    resolved one (`profile`), the study folder, this execution's output folder, result writers."""

    def __init__(self, notebook: str, values: dict, base: Profile, profile: Profile, study_dir: Path, out: Path):
        self.notebook, self.values, self.base, self.profile = notebook, values, base, profile
        self.member, self.study_dir, self.out = values["member"], study_dir, out
        self.started = datetime.datetime.now().isoformat(timespec="seconds")

    def changes(self) -> dict[str, object]:
        """Every field whose value differs from the study's profile: {dotted key: value}."""
        old = leaf_values(self.base)
        return {k: v for k, v in leaf_values(self.profile).items() if old.get(k) != v}

    def __repr__(self) -> str:
        member = self.member or "none: the profile's own run"
        rows = [f"{self.notebook}  ({self.profile.label()})", f"  study folder  {self.study_dir}",
                f"  output        {self.out}", f"  member        {member}"]
        given = self.values["overrides"]
        for key, value in self.changes().items():
            rows.append(f"  {key:<40}{value!r:<28} ({'override' if key in given else 'member'})")
        return "\n".join(rows)

    def path(self, name: str) -> Path:
        return self.out / name

    def save_json(self, name: str, obj) -> Path:
        return atomic_write_json(self.out / name, obj)

    def finish(self, result: dict) -> Path:
        """Write result.json last, with the resolved profile: its presence means this execution
        completed (the runner skips executions whose result.json records the same parameters)."""
        record = {"notebook": self.notebook, "parameters": self.values, "profile": self.profile.name,
                  "profile_fingerprint": profile_fingerprint(self.base), "config": self.profile.to_dict(),
                  "started": self.started, "finished": datetime.datetime.now().isoformat(timespec="seconds"),
                  "host": platform.node(), **result}
        return self.save_json(RESULT_FILE, record)


def study_root() -> Path:
    """Where the study's relative paths (runs/) live: the checkout the package is installed
    from (`pip install -e .`), whichever folder JupyterLab or a kernel started in; for an
    installed copy outside a checkout, the working directory."""
    checkout = Path(__file__).resolve().parents[2]
    return checkout if (checkout / "notebooks").is_dir() else Path.cwd()


def default_study_dir(profile: str) -> Path:
    return study_root() / "runs" / profile


def setup(notebook: str, namespace: dict) -> NotebookRun:
    """Check the notebook's parameters (one-line ParameterError on a bad one), resolve its
    profile, set torch's thread count and create the output folder."""
    values = validate(notebook, namespace)
    study_dir = Path(values["study_dir"]) if values["study_dir"] else default_study_dir(values["profile"])
    try:
        base = load_profile(values["profile"], study_dir)
    except ValueError as e:
        raise ParameterError(str(e)) from None
    profile = resolve(notebook, base, values["member"], values["overrides"])
    values["study_dir"] = str(study_dir)
    out = study_dir / notebook / (values["member"] or "")
    if profile.threads:
        import torch
        torch.set_num_threads(profile.threads)
    out.mkdir(parents=True, exist_ok=True)
    if not isinstance(namespace.get(_DONE_MARK), (set, frozenset)):
        namespace[_DONE_MARK] = frozenset(k for k, v in namespace.items()
                                          if not k.startswith("_") and isinstance(v, _PLAIN))
    return NotebookRun(notebook, values, base, profile, study_dir, out)


def read_result(out: str | Path) -> dict | None:
    return read_json(Path(out) / RESULT_FILE)
