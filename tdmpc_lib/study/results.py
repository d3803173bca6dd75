"""Reading a study's results from the files its notebooks and training runs wrote (never from
notebook JSON): result.json of every execution, and each training run's metrics.csv / eval.csv.

    study = load_study("runs/mini")
    study.teachers   one row per teacher (01): label, params, normalized_score
    study.runs       one row per student execution (02): notebook, member, d_coef, seed,
                     steps, latent, teacher, normalized_score, run_dir, pca_explained_variance
    study.curves     score against updates, from every run's eval.csv
    study.quant      the quantization table (04), study.viewer the viewer's record (06)
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..files import read_json
from .params import RESULT_FILE, read_result


LATENT_ORDER = ("none", "linear-frozen", "linear", "pca")  # reward only, then the latent variants
ARM_ORDER = ("reward", "value", "policy", "all")  # the paper's arm (scratch, d_coef), then the ones beyond it
PRIOR_ONLY = " (prior only)"  # an arm acting with its policy prior alone, no planner


def _results(folder: Path) -> list[dict]:
    """Every result.json under `folder` that reads as JSON."""
    found = (read_result(path.parent) for path in sorted(folder.glob(f"**/{RESULT_FILE}")))
    return [r for r in found if r is not None]


def read_metrics(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return pd.DataFrame()
    return pd.read_csv(path)


def _last(metrics: pd.DataFrame, column: str) -> float | None:
    """The last logged value of a column (None when the run never logged it)."""
    if column not in metrics or not metrics[column].notna().any():
        return None
    return float(metrics[column].dropna().iloc[-1])


def loss_columns(metrics: pd.DataFrame) -> list[str]:
    return [c for c in metrics.columns if c.endswith("_loss")]


@dataclass
class Study:
    study_dir: Path
    teachers: pd.DataFrame = field(default_factory=pd.DataFrame)
    runs: pd.DataFrame = field(default_factory=pd.DataFrame)
    curves: pd.DataFrame = field(default_factory=pd.DataFrame)
    quant: pd.DataFrame = field(default_factory=pd.DataFrame)
    viewer: dict | None = None
    _aggregate: dict | None = field(default=None, repr=False)

    def arms(self, profile) -> dict[str, dict[str, list[float]]]:
        """Every episode's return per task of each arm, in figure order: 'teacher' (the
        ceiling), 'random' (the floor), the default-teacher student runs of the sweep's length
        by d_coef ('scratch', 'd_coef X'), the latent variants ('d_coef X + latent MODE'), the
        quantized formats of the distilled students ('fp16', ...), and last, when the study plans,
        the teacher and every student acting with its policy prior alone ('<arm> (prior only)').
        A student arm pools the episodes of all its training seeds: its runs are (seed, episode)
        pairs."""
        out: dict[str, dict[str, list[float]]] = {}
        prior: dict[str, dict[str, list[float]]] = {}

        def add(name: str, returns: dict | None, into: dict = out) -> None:
            for task, rets in (returns or {}).items():
                into.setdefault(name, {}).setdefault(task, []).extend(rets)

        teacher = self.own_teacher(profile)
        if teacher is not None:
            add("teacher", teacher["returns"])
            add("teacher" + PRIOR_ONLY, teacher.get("prior_returns"), prior)
            add("random", teacher["floor_returns"])
        for _, row in self.sweep_runs(profile).iterrows():
            add(arm_label(row), row["returns"])
            add(arm_label(row) + PRIOR_ONLY, row.get("prior_returns"), prior)
        q = self.quant
        if len(q) and "returns" in q:
            for _, row in q.iterrows():
                if row["format"] != "fp32":
                    add(row["format"], row["returns"])
        return {k: v for k, v in {**out, **prior}.items() if v}

    def sweep_runs(self, profile) -> pd.DataFrame:
        """The student runs of the sweep's length with the default teacher, one row per training
        run, in figure order: reward only (scratch, d_coef), the arms beyond the paper, then the
        latent variants; within each by d_coef and seed."""
        r = self.runs
        if not len(r):
            return r
        r = r[r["default_teacher"].astype(bool) & (r["steps"] == profile.train.steps)].drop_duplicates("run_dir")
        r = r.assign(_mode=[LATENT_ORDER.index(m) if m in LATENT_ORDER else len(LATENT_ORDER) for m in r["latent"]],
                     _arm=[ARM_ORDER.index(a) if a in ARM_ORDER else len(ARM_ORDER) for a in r["arm"]])
        return r.sort_values(["_mode", "_arm", "d_coef", "seed"])

    def episode_profile(self, profile) -> pd.DataFrame:
        """Where along an episode each arm earns or loses its return: one row per (arm, task,
        evaluation episode, tenth of the episode) with `step` (the tenth's first agent step) and
        `reward` (the mean reward per agent step within it), from the evaluation files
        (tdmpc_lib.evaluate's segment_returns): the teacher, then every student arm without a
        latent term. Evaluation files written before segment returns existed add no rows."""
        from ..tasks import DMC_EPISODE_LENGTH

        rows = []

        def add(arm: str, path) -> None:
            result = (read_json(path) if path else None) or {}
            for task, v in result.get("tasks", {}).items():
                for episode, parts in enumerate(v.get("segment_returns") or []):
                    width = DMC_EPISODE_LENGTH / len(parts)
                    rows.extend({"arm": arm, "task": task, "file": str(path), "episode": episode,
                                 "step": i * width, "reward": r / width} for i, r in enumerate(parts))

        teacher = self.own_teacher(profile)
        if teacher is not None:
            add("teacher", teacher.get("eval_file"))
        for _, row in self.sweep_runs(profile).iterrows():
            if row["latent"] == "none" and row["run_dir"]:
                add(arm_label(row), Path(row["run_dir"]) / "final_eval.json")
        return pd.DataFrame(rows, columns=["arm", "task", "file", "episode", "step", "reward"])

    def own_teacher(self, profile):
        """The 01 row (a pandas Series) of the profile's own teacher (the first teacher when none
        matches its spec), or None before 01 ran."""
        t = self.teachers
        if not len(t):
            return None
        own = t["spec"] == profile.teacher.checkpoint
        return (t[own] if own.any() else t).iloc[0]

    def aggregate(self, profile) -> dict[str, dict]:
        """IQM and mean normalized score of every arm with 95% stratified-bootstrap CIs (rliable)."""
        if self._aggregate is None:
            self._aggregate = _aggregate(self.arms(profile))
        return self._aggregate

    def summary(self) -> str:
        return (f"{self.study_dir}: {len(self.teachers)} teacher(s), {len(self.runs)} student execution(s) "
                f"({self.runs['run_dir'].nunique() if len(self.runs) else 0} distinct training runs), "
                f"{len(self.quant)} quantization row(s), viewer {'yes' if self.viewer else 'no'}")


ARM_LABELS = {"value": "value distill", "policy": "policy distill", "all": "reward+value+policy"}


def transfer_label(arm: str, d_coef: float) -> str:
    """The label of a transfer arm beyond the paper; 'all' is named by its terms, so the arm at
    d_coef 0 (value and policy distillation without the reward term) is 'value+policy'."""
    return "value+policy" if arm == "all" and not d_coef else ARM_LABELS.get(arm, arm)


def arm_label(r) -> str:
    """The arm a student run belongs to: 'scratch', 'd_coef 0.45', 'd_coef 0.45 + latent pca',
    or a transfer arm beyond the paper (`transfer_label`: 'value distill', 'policy distill',
    'reward+value+policy', 'value+policy')."""
    arm = r.get("arm") or "reward"
    if isinstance(arm, str) and arm != "reward":
        return transfer_label(arm, r.get("d_coef") or 0.0)
    base = "scratch" if not r.get("d_coef") else f"d_coef {r['d_coef']:g}"
    return base if r.get("latent", "none") == "none" else f"{base} + latent {r['latent']}"


def _aggregate(arms: dict[str, dict[str, list[float]]]) -> dict[str, dict]:
    """stats.aggregate of the arms with the same number of runs on every task."""
    from .. import stats
    return stats.aggregate({name: stats.score_matrix(rets, sorted(rets)) for name, rets in arms.items()
                            if len({len(v) for v in rets.values()}) == 1})


def load_study(study_dir: str | Path) -> Study:
    study_dir = Path(study_dir)
    st = Study(study_dir)
    teachers = []
    for r in _results(study_dir / "01_teacher"):
        t, floor = r.get("teacher", {}), r.get("floor") or {}
        teachers.append({"member": r["parameters"].get("member"), "spec": t.get("spec"), "label": t.get("label"),
                         "path": t.get("path"), "source": t.get("source"), "params": r.get("total_params"),
                         "size": r.get("size"), "normalized_score": r.get("normalized_score"),
                         "returns": r.get("returns"), "prior_returns": r.get("prior_returns"),
                         "eval_file": r.get("eval_file"), "floor_returns": floor.get("returns"),
                         "floor_score": floor.get("normalized_score"),
                         "teacher_reward_mse_true": (r.get("reward_error") or {}).get("mse_true"),
                         "diagnostics": r.get("diagnostics")})
    st.teachers = pd.DataFrame(teachers)
    runs, curves = [], []
    for r in _results(study_dir / "02_distillation"):
        rec = r.get("run") or {}
        teacher, err = rec.get("teacher") or {}, rec.get("reward_error") or {}
        row = {"member": r["parameters"].get("member"), "d_coef": rec.get("d_coef", 0.0),
               "arm": rec.get("arm", "reward"), "diagnostics": rec.get("diagnostics"),
               **{k: rec.get(k) for k in ("seed", "steps", "schedule", "batch_size", "teacher_params",
                                          "student_params", "normalized_score", "run_dir", "train_s")},
               "latent": rec.get("latent", "none"), "teacher_spec": teacher.get("spec"),
               "teacher": teacher.get("label", "none"), "default_teacher": r.get("default_teacher", True),
               "returns": rec.get("returns") or None, "prior_returns": rec.get("prior_returns"),
               "reward_mse_true": err.get("mse_true"), "reward_mse_teacher": err.get("mse_teacher")}
        run_dir = Path(rec["run_dir"]) if rec.get("run_dir") else None
        metrics = read_metrics(run_dir / "metrics.csv") if run_dir else pd.DataFrame()
        row["pca_explained_variance"] = _last(metrics, "pca_explained_variance")
        row["label"] = arm_label(row)
        runs.append(row)
        evals = read_metrics(run_dir / "eval.csv") if run_dir else pd.DataFrame()
        if len(evals):
            curves.append(evals[["step", "normalized_score"]].assign(
                run_dir=row["run_dir"], label=row["label"], d_coef=row["d_coef"], seed=row["seed"],
                steps_total=row["steps"], teacher=row["teacher"]))
    st.runs = pd.DataFrame(runs)
    st.curves = pd.concat(curves, ignore_index=True).drop_duplicates(["run_dir", "step"]) if curves else pd.DataFrame()
    qjson = study_dir / "04_quantization" / "quantization.json"
    st.quant = pd.DataFrame(json.loads(qjson.read_text())) if qjson.is_file() else pd.DataFrame()
    st.viewer = read_result(study_dir / "06_rollout_viewer")
    return st


def checkpoints(study: Study) -> dict[str, str]:
    """{label: checkpoint path} of every teacher and student run in the study (for pickers)."""
    out = {}
    for _, t in study.teachers.iterrows() if len(study.teachers) else []:
        if t.get("path") and Path(t["path"]).is_file():
            out[f"teacher: {t['label']}"] = t["path"]
    runs = study.runs.drop_duplicates("run_dir") if len(study.runs) else study.runs
    for _, r in runs.iterrows() if len(runs) else []:
        path = Path(r["run_dir"]) / "model.pt"
        if path.is_file():
            extra = "" if r["default_teacher"] else f", teacher {r['teacher']}"
            out[f"student: {r['label']}, seed {r['seed']}, {int(r['steps'])} updates{extra}"] = str(path)
    return out


def pooled_aggregate(study_dirs: list[str | Path], profile) -> dict:
    """IQM and mean with 95% stratified-bootstrap CIs of every arm pooled over several studies of
    one profile that differ only in their dataset (e.g. `--set data.seed=200` into another
    study folder): a run is then a (dataset, training seed, episode) triple. Also each study's
    own aggregate, so a claim can be checked on every dataset. Only arms present in every study
    are pooled."""
    per = {str(d): load_study(d).arms(profile) for d in study_dirs}
    common = set.intersection(*(set(a) for a in per.values())) if per else set()
    pooled: dict[str, dict[str, list[float]]] = {}
    for name in sorted(common):
        for arms in per.values():
            for task, r in arms[name].items():
                pooled.setdefault(name, {}).setdefault(task, []).extend(r)
    return {"studies": list(per), "pooled": _aggregate(pooled), "per_study": {d: _aggregate(a) for d, a in per.items()}}


def record_study(study_dir: str | Path, dest: str | Path) -> list[Path]:
    """Copy what a finished study's numbers rest on into `dest` (e.g. results/mini, committed):
    the resolved profile, 05's aggregate.json and reward_error.json, every student run of the
    sweep's length (config, every episode's return, held-out reward errors) as student_runs.json,
    01's teacher and random-floor evaluations and the teacher's held-out diagnostics, 04's
    quantization.csv, the runner's study_log.jsonl, and the figures 05 drew (dest/figures/*.png).
    Returns the files written."""
    from ..files import atomic_write, atomic_write_json, atomic_write_text

    study_dir, dest = Path(study_dir), Path(dest)
    st = load_study(study_dir)
    if st.runs.empty or not (study_dir / "05_results" / "aggregate.json").is_file():
        raise ValueError(f"{study_dir} is not a finished study (no student runs or no 05_results/aggregate.json); "
                         f"run it first")
    dest.mkdir(parents=True, exist_ok=True)
    written = []

    def copy(src: Path, name: str) -> None:
        if src.is_file():
            atomic_write_text(dest / name, src.read_text())
            written.append(dest / name)

    copy(study_dir / "profile.json", "profile.json")
    copy(study_dir / "05_results" / "aggregate.json", "aggregate.json")
    copy(study_dir / "05_results" / "reward_error.json", "reward_error.json")
    copy(study_dir / "04_quantization" / "quantization.csv", "quantization.csv")
    copy(study_dir / "study_log.jsonl", "study_log.jsonl")
    teachers = sorted((study_dir / "01_teacher").glob(f"*/{RESULT_FILE}"))
    if teachers:  # the profile's own teacher is the first 01 member
        copy(teachers[0].parent / "eval.json", "teacher_eval.json")
        copy(teachers[0].parent / "floor.json", "random_floor.json")
        copy(teachers[0].parent / "diagnostics.json", "teacher_diagnostics.json")
    figures = study_dir / "05_results" / RESULT_FILE
    for path in (json.loads(figures.read_text()).get("figures") or {}).values() if figures.is_file() else ():
        if Path(path).is_file():
            (dest / "figures").mkdir(exist_ok=True)
            data = Path(path).read_bytes()
            atomic_write(dest / "figures" / Path(path).name, lambda f, data=data: f.write(data))
            written.append(dest / "figures" / Path(path).name)
    runs = {}
    for _, r in st.runs.drop_duplicates("run_dir").iterrows():
        if not r["default_teacher"]:
            continue
        diag = r.get("diagnostics") or {}
        runs[Path(r["run_dir"]).name] = {
            "arm": r.get("arm", "reward"), "d_coef": r["d_coef"], "latent": r["latent"], "seed": r["seed"],
            "steps": r["steps"], "normalized_score": r["normalized_score"], "returns": r["returns"],
            "prior_returns": r.get("prior_returns"),
            "heldout_reward_mse_true": r["reward_mse_true"], "heldout_reward_mse_teacher": r["reward_mse_teacher"],
            "diagnostics": {"per_task": diag.get("per_task"), "mean": diag.get("mean")} if diag else None}
    atomic_write_json(dest / "student_runs.json", dict(sorted(runs.items())))
    written.append(dest / "student_runs.json")
    return written
