"""The study's building blocks, each idempotent and safe to call from parallel notebooks:

    ensure_dataset(profile, study_dir)           -> Path of the profile's dataset store
    resolve_teacher(profile, study_dir, spec)    -> TeacherInfo (hub / file / trained here)
    student_config(profile, study_dir, ...)      -> TrainConfig of a student run (its folder is
                                                    keyed by the config, so identical runs of two
                                                    notebooks are trained once)
    run_student(cfg)                             -> the run's record (trains, resumes or reuses)
    default_student(profile, study_dir)          -> record of the profile's default distilled run

Folders under the study folder (runs/<profile>/): data/ (the store and its teacher-target
caches), teachers/train-SIZE/ (teachers trained here), train/<key>/ (student runs: config.json,
metrics.jsonl/csv, eval.jsonl/csv, checkpoints/, model.pt, summary.json). A file lock guards
each of them, so parallel sweep members wait for a shared dataset or teacher instead of racing.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import fcntl
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..train.config import DistillConfig, TrainConfig
from .params import fingerprint
from .profiles import Profile

DATA_STAMP = "study_data.json"


@contextlib.contextmanager
def locked(path: str | Path):
    """An exclusive advisory lock on `path` (created) for the duration of the block."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    os.replace(tmp, path)


# ---------------------------------------------------------------------------- data
def ensure_dataset(profile: Profile, study_dir: str | Path, progress: bool = False) -> Path:
    """Make the profile's dataset once (synthetic, collected with dm_control, or converted from
    the hub's chunks) under <study_dir>/data; later calls return at once."""
    study_dir = Path(study_dir)
    path = study_dir / "data"
    spec = dataclasses.asdict(profile.data)
    with locked(study_dir / ".data.lock"):
        stamp = path / DATA_STAMP
        if stamp.is_file() and json.loads(stamp.read_text()).get("spec") == spec:
            return path
        d = profile.data
        if d.source == "hub":  # convert_chunks resumes a half-converted store by itself
            from ..data import convert_chunks, download_chunks
            convert_chunks(download_chunks("mt30", d.chunks), path, trust_pickle=True, progress=progress)
        else:
            if path.exists():  # an interrupted or different earlier attempt
                shutil.rmtree(path)
            if d.source == "synthetic":
                from ..data.benchmark_support import make_synthetic_store
                make_synthetic_store(path, rows=d.rows, episode_length=d.episode_length, seed=d.seed,
                                     progress=progress)
            elif d.source == "collect":
                from ..data import collect
                collect(path, d.tasks, d.episodes, d.policy, seed=d.seed, max_steps=d.max_steps, progress=progress)
            else:
                raise ValueError(f"unknown data source {d.source!r}; choose synthetic, collect or hub")
        from ..data import open_store
        store = open_store(path)
        _write_json(stamp, {"spec": spec, "rows": store.num_rows, "episodes": store.num_episodes})
        store.close()
    return path


def dataset_info(study_dir: str | Path) -> dict:
    stamp = Path(study_dir) / "data" / DATA_STAMP
    return json.loads(stamp.read_text()) if stamp.is_file() else {}


# ---------------------------------------------------------------------------- teachers
@dataclass
class TeacherInfo:
    spec: str  # what was asked for ('auto', 'train:5', 'mt30-317M', a path)
    path: str  # the checkpoint file
    source: str  # 'hub', 'file' or 'trained here'
    label: str  # short name for tables and figures
    train_summary: dict | None = None


def hub_cached(name: str) -> str | None:
    """Local path of hub checkpoint `name` when it is in the Hugging Face cache (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    from ..checkpoint import HUB_REPO
    found = try_to_load_from_cache(HUB_REPO, f"multitask/{name.removesuffix('.pt')}.pt")
    return found if isinstance(found, str) else None


def teacher_key(spec: str) -> str:
    """A folder-safe short name for a teacher spec."""
    if spec.startswith("train:"):
        return "train-" + spec.split(":", 1)[1]
    return Path(spec).stem.replace(" ", "_") if os.sep in spec or spec.endswith(".pt") else spec


def resolve_teacher(profile: Profile, study_dir: str | Path, spec: str | None = None, device: str | None = None,
                    threads: int = 0, progress: bool = False) -> TeacherInfo:
    """Turn a teacher spec into a checkpoint file, training the teacher here when asked.

    'auto' -> the profile's teacher_hub when it is already in the local cache (no download),
    otherwise 'train:<teacher_size>'. 'train:SIZE' -> a SIZE preset trained on the profile's
    dataset for teacher_steps updates (once; resumed after an interruption)."""
    from ..checkpoint import HUB_CHECKPOINTS, download_checkpoint

    spec = spec or profile.teacher
    if spec == "auto":
        cached = hub_cached(profile.teacher_hub)
        if cached:
            return TeacherInfo("auto", cached, "hub", f"{profile.teacher_hub} (hub, cached)")
        spec = f"train:{profile.teacher_size}"
        asked = "auto"
    else:
        asked = spec
    if spec in HUB_CHECKPOINTS:
        return TeacherInfo(asked, download_checkpoint(spec), "hub", f"{spec} (hub)")
    if not spec.startswith("train:"):
        if not Path(spec).is_file():
            raise FileNotFoundError(f"teacher checkpoint {spec!r} does not exist")
        return TeacherInfo(asked, str(spec), "file", Path(spec).stem)
    size = spec.split(":", 1)[1]
    size = int(size) if size.isdigit() else size
    study_dir = Path(study_dir)
    run_dir = study_dir / "teachers" / teacher_key(spec)
    cfg = TrainConfig(data=str(ensure_dataset(profile, study_dir)), out=str(run_dir), student_size=size,
                      steps=profile.teacher_steps, batch_size=profile.teacher_batch_size, seed=profile.seed,
                      device=device or profile.device, threads=threads, eval_freq=0,
                      checkpoint_freq=max(1, profile.teacher_steps // 4), keep_checkpoints=1,
                      log_freq=max(1, profile.teacher_steps // 50), progress=progress, resume=True)
    summary = _train_once(cfg, run_dir)
    label = f"{size}M trained here" if isinstance(size, int) else f"{size} trained here"
    return TeacherInfo(asked, summary["model"], "trained here", label, summary)


# ---------------------------------------------------------------------------- students
def _run_fields(cfg: TrainConfig) -> dict:
    d = cfg.to_dict()
    for k in ("out", "progress", "threads", "resume", "log_freq", "checkpoint_freq", "keep_checkpoints",
              "wandb_project"):
        d.pop(k, None)
    d["distill"].pop("teacher_device", None)
    return d


def _train_once(cfg: TrainConfig, run_dir: Path) -> dict:
    """Train `cfg` into run_dir unless a finished run of the same config is there; resumes an
    interrupted one. Returns its summary (summary.json)."""
    from ..train import train

    with locked(run_dir.parent / f".{run_dir.name}.lock"):
        summary_path = run_dir / "summary.json"
        config_path = run_dir / "config.json"
        if summary_path.is_file() and config_path.is_file():
            saved = TrainConfig.from_dict(json.loads(config_path.read_text())["train_config"])
            summary = json.loads(summary_path.read_text())
            if _run_fields(saved) == _run_fields(cfg) and summary.get("steps") == cfg.steps:
                return summary
        if run_dir.exists() and not any((run_dir / "checkpoints").glob("step_*.pt")):
            shutil.rmtree(run_dir)  # an attempt that died before its first checkpoint
        return train(dataclasses.replace(cfg, resume=True))


def _ensure_teacher_cache(cfg: TrainConfig) -> None:
    """Build the teacher-target cache once, under a lock (parallel runs share it)."""
    d = cfg.distill
    if d.cache is None or not d.reward_enabled:
        return
    from ..train import build_teacher_cache
    with locked(Path(cfg.data) / ".teacher_cache.lock"):
        build_teacher_cache(cfg.data, d.teacher, d.cache, d.teacher_device or cfg.device, d.teacher_dtype,
                            d.cache_precision, d.cache_tolerance, d.cache_batch_size, progress=False)


def student_config(profile: Profile, study_dir: str | Path, *, teacher: str | None = None, d_coef: float | None = None,
                   schedule: str | None = None, latent: str = "none", latent_coef: float | None = None,
                   pca_samples: int | None = None, student_size=None, batch_size: int | None = None,
                   steps: int | None = None, seed: int | None = None, device: str | None = None, threads: int = 0,
                   eval_freq: int | None = None, progress: bool = False) -> tuple[TrainConfig, TeacherInfo | None]:
    """The TrainConfig of one student run (values left at None come from the profile). d_coef 0
    without a latent term is the from-scratch baseline: no teacher at all."""
    p = profile
    study_dir = Path(study_dir)
    d_coef = p.d_coef if d_coef is None else float(d_coef)
    steps = steps or p.steps
    device = device or p.device
    info = None
    if d_coef > 0 or latent != "none":
        info = resolve_teacher(p, study_dir, teacher, device, threads, progress)
    distill = DistillConfig(teacher=info.path if info else None, d_coef=d_coef if info else 0.0,
                            schedule=schedule or p.schedule, latent=latent,
                            latent_coef=p.latent_coef if latent_coef is None else latent_coef,
                            pca_samples=pca_samples or p.pca_samples,
                            cache="auto" if (info and p.teacher_cache and d_coef > 0) else None)
    if eval_freq is None:
        eval_freq = max(1, steps // max(1, p.eval_points))
    cfg = TrainConfig(data=str(ensure_dataset(p, study_dir)), out="", student_size=student_size or p.student_size,
                      batch_size=batch_size or p.batch_size, steps=steps, seed=p.seeds[0] if seed is None else seed,
                      device=device, threads=threads, eval_freq=eval_freq, eval_final=True, eval_tasks=p.tasks,
                      eval_episodes=p.episodes, eval_protocol=p.protocol, eval_policy=p.policy,
                      checkpoint_freq=max(1, steps // 4), keep_checkpoints=1, log_freq=max(1, steps // 50),
                      progress=progress, distill=distill)
    name = (f"{cfg.student_size}M" if isinstance(cfg.student_size, int) else str(cfg.student_size))
    name += f"_{'scratch' if not info else 'd' + format(distill.d_coef, 'g')}"
    if latent != "none":
        name += f"_{latent}"
    name += f"_s{cfg.seed}_{steps}st_{fingerprint(_run_fields(cfg))}"
    return dataclasses.replace(cfg, out=str(study_dir / "train" / name)), info


def run_student(cfg: TrainConfig, teacher: TeacherInfo | None = None) -> dict:
    """Train (or resume, or reuse) the run and return its record: paths, final score, per-task
    scores, the evaluation curve and the config."""
    _ensure_teacher_cache(cfg)
    run_dir = Path(cfg.out)
    summary = _train_once(cfg, run_dir)
    return run_record(run_dir, teacher, summary)


def read_csv(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        conv = {}
        for k, v in r.items():
            try:
                conv[k] = float(v) if v not in ("", None) else None
            except ValueError:
                conv[k] = v
        out.append(conv)
    return out


def run_record(run_dir: str | Path, teacher: TeacherInfo | None = None, summary: dict | None = None) -> dict:
    run_dir = Path(run_dir)
    summary = summary or json.loads((run_dir / "summary.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    evals = read_csv(run_dir / "eval.csv")
    last = evals[-1] if evals else {}
    tc = config["train_config"]
    return {"run_dir": str(run_dir), "checkpoint": summary["model"], "steps": summary["steps"],
            "train_s": summary.get("train_s"), "student_params": summary.get("student_params"),
            "normalized_score": last.get("normalized_score"),
            "task_scores": {k.split("/", 1)[1]: v for k, v in last.items() if k.startswith("score/")},
            "curve": [{"step": int(r["step"]), "normalized_score": r["normalized_score"]} for r in evals],
            "d_coef": tc["distill"]["d_coef"] if tc["distill"]["teacher"] else 0.0,
            "latent": tc["distill"]["latent"], "schedule": tc["distill"]["schedule"], "seed": tc["seed"],
            "batch_size": tc["batch_size"], "student_size": tc["student_size"],
            "teacher": dataclasses.asdict(teacher) if teacher else None,
            "teacher_params": (config.get("teacher") or {}).get("params"),
            "eval": {k: tc[k] for k in ("eval_tasks", "eval_episodes", "eval_protocol", "eval_policy")},
            "metrics_csv": str(run_dir / "metrics.csv"), "eval_csv": str(run_dir / "eval.csv")}


def default_student(profile: Profile, study_dir: str | Path, device: str | None = None, threads: int = 0) -> dict:
    """The profile's default distilled student (d_coef = profile.d_coef, first seed, the
    default teacher): reused when notebook 02 trained it, trained here otherwise."""
    cfg, info = student_config(profile, study_dir, device=device, threads=threads)
    return run_student(cfg, info)
