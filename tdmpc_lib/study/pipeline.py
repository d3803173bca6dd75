"""The study's building blocks, each idempotent and safe to call from parallel notebooks:

    ensure_dataset(profile, study_dir)           -> Path of the profile's dataset store
    ensure_training_data(profile, study_dir)     -> Path of the store students train on: the dataset,
                                                    plus the takeover episodes of a round-0 student
    ensure_heldout(profile, study_dir)           -> Path of the held-out episodes (or None)
    resolve_teacher(profile, study_dir, spec)    -> TeacherInfo (bundled / hub / file / trained here)
    student_config(profile, study_dir)           -> TrainConfig of a student run (its folder is
                                                    keyed by the config, so identical runs of two
                                                    notebooks are trained once)
    run_student(cfg, teacher, profile, study_dir) -> the run's record (trains, resumes or reuses;
                                                    evaluates the final model, with MPPI and with its
                                                    policy prior alone; held-out measures)
    evaluate_checkpoint(profile, ckpt, out)      -> the study's evaluation of a checkpoint (cached)
    random_floor(profile, out)                   -> a uniform random policy on the same initial states
    heldout_reward_error(profile, study_dir, ckpt, out) -> the reward head on the held-out episodes
    heldout_diagnostics(profile, study_dir, ckpt, out)  -> Q calibration, action sensitivity, prior
                                                    saturation, the teacher's value of its actions
    default_student(profile, study_dir)          -> record of the profile's default distilled run

Folders under the study folder (runs/<profile>/): data/ (the store and its teacher-target
caches), data_takeover/ (the store with the takeover episodes, when the profile has them),
heldout/ (episodes no student trains on, and the teacher's predictions on them),
teachers/train-SIZE_<config hash>/ (teachers trained here), train/<key>/ (student runs: config.json,
metrics.jsonl/csv, eval.jsonl/csv, checkpoints/, model.pt, summary.json, final_eval.json,
heldout_reward_error.json, diagnostics.json). Each is made by `made_once` (tdmpc_lib.files):
under a file lock, so parallel sweep members wait for a shared dataset, teacher or run instead
of racing, and reused while what it was made from is unchanged.
"""
from __future__ import annotations

import dataclasses
import functools
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..files import atomic_write, fingerprint, made_once, read_json, read_json_object
from ..evaluate import EvalConfig, evaluate
from ..train.config import DistillConfig, TrainConfig
from .results import read_metrics
from .profiles import Profile, distils, teacher_key, teacher_spec

DATA_STAMP = "study_data.json"


# ---------------------------------------------------------------------------- data
HELDOUT_SEED_OFFSET = 1000  # held-out episodes use environment seeds data.seed + 1000 + i
TAKEOVER_SEED_OFFSET = 2000  # takeover episodes: environment seed data.seed + 2000


def _store(profile: Profile, path: Path, spec: dict, fill, resumes: bool = False) -> Path:
    """The episode store at `path`, made by fill() once per spec; a half-made or different earlier
    store is removed first, unless fill `resumes` it (a hub conversion). Stamped DATA_STAMP, with
    what fill returns (a dict or None)."""
    from ..data import open_store

    spec = {**spec, "teacher": profile.teacher.checkpoint, "planner": dataclasses.asdict(profile.eval.planner)}

    def make() -> dict:
        if path.exists() and not resumes:
            shutil.rmtree(path)
        made = fill() or {}
        store = open_store(path)
        counts = {"rows": store.num_rows, "episodes": store.num_episodes}
        store.close()
        return {"spec": spec, **counts, **made}
    made_once(path / DATA_STAMP, spec, make, lock=path)
    return path


def _collect(profile: Profile, path: Path, entries, episodes: int, seed: int, progress: bool) -> None:
    """`episodes` per task of every mixture entry; entry i uses environment seed `seed + i`, so no
    two entries (and no evaluation, seed profile.eval.seed) share initial states."""
    from ..checkpoint import load_checkpoint
    from ..data import collect
    from .profiles import parse_mixture_entry

    d, model = profile.data, None
    for i, entry in enumerate(entries):
        policy, noise = parse_mixture_entry(entry)
        if policy != "random" and model is None:
            model = load_checkpoint(resolve_teacher(profile, path.parent, progress=progress).path)
        collect(path, d.tasks, episodes, policy, None if policy == "random" else model, seed=seed + i,
                precision=profile.teacher.precision, max_steps=d.max_steps, explore=policy != "random",
                action_noise=noise, planner=profile.eval.planner, progress=progress)


def ensure_dataset(profile: Profile, study_dir: str | Path, progress: bool = False) -> Path:
    """The profile's dataset under <study_dir>/data (synthetic, collected with dm_control, or
    converted from the hub's chunks), made once; later calls return at once."""
    path, d = Path(study_dir) / "data", profile.data

    def fill() -> None:
        if d.source == "hub":
            from ..data import convert_chunks, download_chunks
            files = list(d.chunk_files) if d.chunk_files else download_chunks("mt30", d.chunks)
            convert_chunks(files, path, trust_pickle=True, progress=progress)
        elif d.source == "synthetic":
            from ..data.benchmark_support import make_synthetic_store
            make_synthetic_store(path, rows=d.rows, episode_length=d.episode_length, seed=d.seed, progress=progress)
        else:
            _collect(profile, path, d.mixture, d.episodes, d.seed, progress)
    spec = {k: v for k, v in dataclasses.asdict(d).items() if not k.startswith("takeover")}
    return _store(profile, path, spec, fill, resumes=d.source == "hub")


def ensure_training_data(profile: Profile, study_dir: str | Path, progress: bool = False) -> Path:
    """The store every student trains on: the dataset, or with data.takeover a copy of it plus the
    takeover episodes (<study_dir>/data_takeover): the round-0 student (takeover_student_config)
    is trained on the dataset, plans the first T steps of one episode per task for each T, and the
    teacher finishes the episode. Made once; parallel runs wait for it."""
    from ..checkpoint import load_checkpoint
    from ..data import Takeover, collect

    base, d = ensure_dataset(profile, study_dir, progress), profile.data
    if not d.takeover:
        return base
    path = Path(study_dir) / "data_takeover"
    cfg, _ = takeover_student_config(profile, study_dir, progress)
    spec = {"dataset": read_json(base / DATA_STAMP)["key"], "takeover": list(d.takeover),
            "student": _run_fields(cfg)}

    def fill() -> dict:
        student_path = _train_once(cfg)["model"]
        student = load_checkpoint(student_path)
        shutil.copytree(base, path, ignore=shutil.ignore_patterns("teacher_cache", DATA_STAMP, ".*.lock"))
        teacher = load_checkpoint(resolve_teacher(profile, study_dir, progress=progress).path)
        took = collect(path, d.tasks, len(d.takeover), "plan", teacher, seed=d.seed + TAKEOVER_SEED_OFFSET,
                       precision=profile.teacher.precision, max_steps=d.max_steps, explore=True,
                       planner=profile.eval.planner, progress=progress, takeover=Takeover(student, d.takeover))
        # each episode's return, in the order of data.takeover: how far the teacher brought it back
        return {"takeover_returns": took["returns"], "takeover_student": str(student_path)}
    return _store(profile, path, spec, fill)


def takeover_student_config(profile: Profile, study_dir: str | Path, progress: bool = False
                            ) -> tuple[TrainConfig, TeacherInfo | None]:
    """The round-0 student of data.takeover: the sweep's `takeover_arm` arm ('reward': the
    profile's own d_coef) with seed sweep.seeds[0], trained on the dataset without the takeover
    episodes. It is the study's, whichever member asks: made from the study folder's resolved
    profile (profiles.load_profile) when its data and teacher are this profile's, so a member's
    own changes (its terms, seed, steps) never reach it."""
    from .profiles import arm_changes, load_profile

    try:
        study = load_profile(profile.name, study_dir)
    except ValueError:  # a profile made in code, under a name of its own
        study = profile
    if (study.data, study.teacher) != (profile.data, profile.teacher):
        study = profile
    arm, seed = study.data.takeover_arm, study.sweep.seeds[0]
    changes = {} if arm == "reward" else arm_changes(study.sweep, arm)
    member = study.replace(**{f"train.distill.{k}": v for k, v in changes.items()}, **{"train.seed": seed})
    return student_config(member, study_dir, progress, data=ensure_dataset(member, study_dir, progress))


def ensure_heldout(profile: Profile, study_dir: str | Path, progress: bool = False) -> Path | None:
    """The held-out episodes (<study_dir>/heldout, collected once), or None when the profile has none."""
    d, path = profile.data, Path(study_dir) / "heldout"
    if not d.heldout:
        return None
    spec = {"tasks": d.tasks, "heldout": list(d.heldout), "episodes": d.heldout_episodes, "seed": d.seed,
            "max_steps": d.max_steps}
    return _store(profile, path, spec, lambda: _collect(profile, path, d.heldout, d.heldout_episodes,
                                                        d.seed + HELDOUT_SEED_OFFSET, progress))


# ---------------------------------------------------------------------------- teachers
@dataclass
class TeacherInfo:
    spec: str  # what was asked for ('auto', 'train:5', 'mt30-317M', a path)
    path: str  # the checkpoint file
    source: str  # 'hub', 'file' or 'trained here'
    label: str  # short name for tables and figures
    train_summary: dict | None = None


def resolve_teacher(profile: Profile, study_dir: str | Path, spec: str | None = None, progress: bool = False
                    ) -> TeacherInfo:
    """Turn a teacher spec into a checkpoint file, training the teacher here when asked.

    `spec` (None: profile.teacher.checkpoint): a bundled name ('tdmpc-opt-mt30-1M') -> the released checkpoint
    shipped in the package (sha256-checked). 'auto' -> teacher.hub when it is already in the
    local cache (no download), otherwise 'train:<teacher.size>'. 'train:SIZE' -> a SIZE preset
    trained on the profile's dataset for teacher.steps updates (once; resumed after an interruption)."""
    from ..checkpoint import BUNDLED_CHECKPOINTS, cached_hub_checkpoint, checkpoint_path, is_checkpoint_name

    t = profile.teacher
    spec = spec or t.checkpoint
    if spec == "auto":
        cached = cached_hub_checkpoint(t.hub)
        if cached:
            return TeacherInfo("auto", cached, "hub", f"{t.hub} (hub, cached)")
        spec = f"train:{t.size}"
        asked = "auto"
    else:
        asked = spec
    if is_checkpoint_name(spec) and not Path(spec).exists():
        kind, label = ("bundled", f"{spec} (released, bundled)") if spec in BUNDLED_CHECKPOINTS else ("hub", f"{spec} (hub)")
        return TeacherInfo(asked, str(checkpoint_path(spec)), kind, label)
    if not spec.startswith("train:"):
        if not Path(spec).is_file():
            raise FileNotFoundError(f"teacher checkpoint {spec!r} does not exist")
        return TeacherInfo(asked, str(spec), "file", Path(spec).stem)
    size = spec.split(":", 1)[1]
    size = int(size) if size.isdigit() else size
    study_dir = Path(study_dir)
    # The profile's training settings (lr, tau, horizon, precision, ...) without distillation or
    # a starting checkpoint; the folder is named by them, so changing one trains another teacher.
    cfg = _run_config(profile, study_dir, t.steps, progress, ensure_dataset(profile, study_dir, progress),
                      student_size=size, init=None, batch_size=t.batch_size,
                      seed=profile.eval.seed, eval_freq=0, distill=DistillConfig())
    run_dir = study_dir / "teachers" / f"{teacher_key(spec)}_{fingerprint(_run_fields(cfg))}"
    summary = _train_once(dataclasses.replace(cfg, out=str(run_dir)))
    label = f"{size}M trained here" if isinstance(size, int) else f"{size} trained here"
    return TeacherInfo(asked, summary["model"], "trained here", label, summary)


# ---------------------------------------------------------------------------- students
def _run_config(profile: Profile, study_dir: Path, steps: int, progress: bool, data: Path | None = None,
                **changes) -> TrainConfig:
    """profile.train with what the study sets for every run it trains: the data (default: the
    students' ensure_training_data), the device and threads, `steps`, checkpoints and logs in
    proportion, no evaluation during the run (run_student evaluates the final model), and `changes`."""
    data = data or ensure_training_data(profile, study_dir, progress)
    return dataclasses.replace(
        profile.train, data=str(data), out="", device=profile.device,
        threads=profile.threads, steps=steps, eval_final=False, checkpoint_freq=max(1, steps // 4), keep_checkpoints=1,
        log_freq=max(1, steps // 50), progress=progress, resume=True, **changes)


def _run_fields(cfg: TrainConfig) -> dict:
    """What a run is made from: its config without the bookkeeping fields, and the identity of
    its data (the key of the store's DATA_STAMP), since the data path stays the same when a
    study's data changes. A run folder is named by it, so new data trains a new run."""
    d = cfg.to_dict()
    for k in ("out", "progress", "threads", "resume", "log_freq", "checkpoint_freq", "keep_checkpoints",
              "wandb_project"):
        d.pop(k, None)
    d["distill"].pop("teacher_device", None)
    d["data_key"] = (read_json(Path(cfg.data) / DATA_STAMP) or {}).get("key")
    return d


def _train_once(cfg: TrainConfig) -> dict:
    """Train `cfg` into its run folder once (the summary, reused while the run's fields are the
    same); an interrupted run resumes from its last checkpoint."""
    from ..train import train

    run_dir = Path(cfg.out)

    def make() -> dict:
        if run_dir.exists() and not any((run_dir / "checkpoints").glob("step_*.pt")):
            shutil.rmtree(run_dir)  # an attempt that died before its first checkpoint
        return train(dataclasses.replace(cfg, resume=True))
    return made_once(run_dir / "study_run.json", _run_fields(cfg), make, lock=run_dir)


def student_config(profile: Profile, study_dir: str | Path, progress: bool = False, data: Path | None = None
                   ) -> tuple[TrainConfig, TeacherInfo | None]:
    """The TrainConfig of the profile's run: `profile.train` (a sweep member's profile has its
    changes in it already) with the fields the study sets per run: the dataset, the run folder
    (named by the config, so identical runs of two notebooks are trained once), the device and
    threads, the evaluation schedule (sweep.eval_points, evaluations as `profile.eval`) and the
    teacher. A run with no distillation term on is the from-scratch baseline: no teacher at all.
    The final model is evaluated by `run_student`."""
    p, study_dir = profile, Path(study_dir)
    distill, info = p.train.distill, None
    if distils(p):
        info = resolve_teacher(p, study_dir, teacher_spec(p), progress)
        distill = dataclasses.replace(distill, teacher=info.path, cache="auto" if p.teacher.cache else None)
    else:
        distill = dataclasses.replace(distill, teacher=None, d_coef=0.0, q_coef=0.0, pi_coef=0.0, q_target_mix=0.0,
                                      cache=None, detach_encoder=False)
    steps = p.train.steps
    cfg = _run_config(p, study_dir, steps, progress, data, eval=eval_config(p), distill=distill,
                      eval_freq=steps // p.sweep.eval_points if p.sweep.eval_points > 1 else 0)
    arm = run_arm(dataclasses.asdict(distill))
    name = f"{cfg.student_size}M" if isinstance(cfg.student_size, int) else str(cfg.student_size)
    name += f"_{arm}" if arm != "reward" else "_scratch" if not info else f"_d{format(distill.d_coef, 'g')}"
    if distill.latent != "none":
        name += f"_{distill.latent}"
    name += f"_s{cfg.seed}_{steps}st_{fingerprint(_run_fields(cfg))}"
    return dataclasses.replace(cfg, out=str(study_dir / "train" / name)), info


def run_student(cfg: TrainConfig, teacher: TeacherInfo | None, profile: Profile, study_dir: str | Path) -> dict:
    """Train (or resume, or reuse) the run, evaluate its final model as the profile says and
    measure its reward head on the held-out episodes; returns the run's record (paths, every
    episode's return, per-task scores, reward-prediction errors, the evaluation curve, config).
    Parallel runs of one dataset share its teacher-target caches: the first builds them, the
    others wait for it (Trainer)."""
    run_dir = Path(cfg.out)
    summary = _train_once(cfg)
    evaluate_checkpoint(profile, summary["model"], run_dir / "final_eval.json")
    if profile.eval.policy == "plan":  # the policy prior alone too: what transfers without the planner
        evaluate_checkpoint(profile, summary["model"], run_dir / "prior_eval.json",
                            cfg=dataclasses.replace(eval_config(profile), policy="prior"))
    heldout_reward_error(profile, study_dir, summary["model"], run_dir / "heldout_reward_error.json")
    heldout_diagnostics(profile, study_dir, summary["model"], run_dir / "diagnostics.json")
    return run_record(run_dir, teacher, summary)


# ---------------------------------------------------------------------------- evaluation
def eval_config(profile: Profile) -> EvalConfig:
    """The study's evaluation (`profile.eval`) on the profile's device."""
    return dataclasses.replace(profile.eval, device=profile.device)


def evaluate_checkpoint(profile: Profile, checkpoint: str, out: str | Path, *, model=None,
                        cfg: EvalConfig | None = None, progress: bool = False) -> dict:
    """Evaluate a checkpoint (or an already loaded `model` of it) with the study's evaluation
    (or `cfg`); the result (tdmpc_lib.evaluate's JSON: every episode's return) is written to
    `out` and reused while the evaluation settings and the checkpoint's sha256 are unchanged."""
    from ..checkpoint import cached_file_sha256, load_checkpoint

    cfg = cfg or eval_config(profile)
    if model is None and not Path(checkpoint).is_file():  # a bundled or hub name: load it to know its file
        model = load_checkpoint(checkpoint, device=cfg.device)
    sha256 = model.checkpoint_info["sha256"] if model is not None else cached_file_sha256(checkpoint)
    # reused without loading the model (a 317M teacher takes seconds)
    return made_once(out, {"eval": dataclasses.asdict(cfg), "sha256": sha256}, lambda: evaluate(
        model if model is not None else load_checkpoint(checkpoint, device=cfg.device), cfg, progress=progress))


def random_floor(profile: Profile, out: str | Path, episodes: int | None = None) -> dict:
    """The floor: a uniform random policy on the evaluation's tasks and initial states (episode k
    of a task starts where the evaluation's episode k does). Same result layout as `evaluate`."""
    from ..data.collect import rollout
    from ..evaluate import normalized_score
    from ..tasks import get_task_set

    episodes = episodes or profile.teacher.episodes
    tasks = get_task_set("mt30").resolve(profile.eval.tasks)

    def compute():
        arrays = rollout(tasks, episodes, "random", seed=profile.eval.seed, progress=False)
        returns = arrays["reward"][:, 1:].sum(axis=1).reshape(len(tasks), episodes)  # task-major
        per_task = {t: {"returns": [round(float(r), 4) for r in returns[i]], "mean": float(returns[i].mean()),
                        "score": float(returns[i].mean()) / 10} for i, t in enumerate(tasks)}
        return {"normalized_score": normalized_score({t: v["mean"] for t, v in per_task.items()}),
                "tasks": per_task, "policy": "random", "protocol": "random", "seed": profile.eval.seed,
                "episodes": episodes}
    inputs = {"tasks": tasks, "episodes": episodes, "seed": profile.eval.seed, "policy": "random"}
    return made_once(out, inputs, compute)


@functools.lru_cache(maxsize=2)
def _measured_model(path: str, sha256: str, device: str):
    """A checkpoint loaded once per process (keyed by its sha256) for the held-out measures, which
    only read it: the teacher's predictions, the student's and the teacher's diagnostics (a 317M
    teacher takes seconds to load, and notebook 01 measures the teacher as its own student)."""
    from ..checkpoint import load_checkpoint
    return load_checkpoint(path, device=device)


def _load_measured(path: str, device: str):
    from ..checkpoint import cached_file_sha256
    return _measured_model(str(path), cached_file_sha256(path), device)


def _teacher_on_heldout(heldout: Path, teacher: TeacherInfo, name: str, compute, device: str):
    """An array the teacher gives on the held-out store, computed once per teacher file by
    compute(teacher model) into <heldout>/teacher_<name>.npy, so every student reads it without
    loading the teacher again."""
    import numpy as np

    from ..checkpoint import cached_file_sha256

    array = heldout / f"teacher_{name}.npy"

    def make() -> dict:
        atomic_write(array, lambda f: np.save(f, compute(_load_measured(teacher.path, device))))
        return {"array": array.name}
    made_once(heldout / f"teacher_{name}.json", cached_file_sha256(teacher.path), make, lock=heldout)
    return np.load(array)


def _on_heldout(profile: Profile, study_dir, checkpoint: str, out, kind: str, measure, **inputs) -> dict | None:
    """measure(store, teacher, heldout, device)'s dict for `checkpoint` on the held-out episodes,
    cached in `out` per (held-out set, teacher, checkpoint, `inputs`); None when the profile has
    no held-out set."""
    from ..checkpoint import cached_file_sha256
    from ..data import open_store

    heldout = ensure_heldout(profile, study_dir)
    if heldout is None:
        return None
    teacher = resolve_teacher(profile, study_dir)

    def compute() -> dict:
        store = open_store(heldout)
        try:
            return {**measure(store, teacher, heldout, profile.device), "teacher": teacher.label}
        finally:
            store.close()
    inputs = {"heldout": read_json(heldout / DATA_STAMP), "teacher": cached_file_sha256(teacher.path),
              "model": cached_file_sha256(checkpoint), "kind": kind, **inputs}
    return made_once(out, inputs, compute)


def heldout_reward_error(profile: Profile, study_dir, checkpoint: str, out) -> dict | None:
    """The reward head of `checkpoint` on the held-out episodes, against the true rewards and
    the profile's teacher (tdmpc_lib.reward_error)."""
    from ..reward_error import reward_error, reward_predictions
    from ..tasks import get_task_set

    def measure(store, teacher, heldout, device) -> dict:
        predicted = _teacher_on_heldout(heldout, teacher, "reward", lambda model: reward_predictions(
            model, store, device=device)["predicted"], device)
        return {**reward_error(_load_measured(checkpoint, device), store, predicted,
                               list(get_task_set(store.task_set).tasks), device=device), "heldout": str(heldout)}
    return _on_heldout(profile, study_dir, checkpoint, out, "reward_error", measure)


def heldout_diagnostics(profile: Profile, study_dir, checkpoint: str, out) -> dict | None:
    """tdmpc_lib.diagnostics of `checkpoint` on the held-out episodes: Q against the Monte-Carlo
    return, Q's sensitivity to the action, its ranking of random actions and of random action
    sequences (by planning value) against the profile's teacher, prior saturation, and the
    teacher's value of the actions the student's MPPI (the study's planner) and its prior take;
    and on the model's own episodes (`own_episodes`): its Q against the return it then earns
    and against the teacher's Q of the same actions."""
    from ..diagnostics import KEYS, OWN_KEYS, action_values, student_diagnostics, task_means

    def measure(store, teacher, heldout, device) -> dict:
        values = _teacher_on_heldout(heldout, teacher, "action_values",
                                     lambda model: action_values(model, store, device=device), device)
        model, teacher_model = _load_measured(checkpoint, device), _load_measured(teacher.path, device)
        result = student_diagnostics(model, store, device=device, teacher_action_values=values,
                                     teacher=teacher_model, planner=profile.eval.planner)
        for task, own in own_episodes(profile, model, teacher_model, device).items():
            result["per_task"].setdefault(task, {}).update(own)
        result["mean"].update(task_means(result["per_task"], OWN_KEYS))
        return result
    return _on_heldout(profile, study_dir, checkpoint, out, "diagnostics", measure,
                       evaluation=dataclasses.asdict(profile.eval), measures=[*KEYS, *OWN_KEYS],
                       own_episodes=OWN_EPISODES)


# Episodes per task of a model's own policy the own-episode diagnostics look at.
OWN_EPISODES = 1


def own_episodes(profile: Profile, model, teacher, device: str) -> dict[str, dict]:
    """diagnostics.own_episode_diagnostics on OWN_EPISODES episodes per evaluation task of `model`
    acting as the study evaluates it (profile.eval: its planner or its prior, eval mode, the
    evaluation's seed), as long as the held-out episodes (data.max_steps)."""
    from ..diagnostics import own_episode_diagnostics

    e = profile.eval
    return own_episode_diagnostics(model, teacher, e.tasks, episodes=OWN_EPISODES, policy=e.policy,
                                   planner=e.planner, seed=e.seed, precision=e.precision,
                                   max_steps=profile.data.max_steps, device=device)


def run_record(run_dir: str | Path, teacher: TeacherInfo | None = None, summary: dict | None = None) -> dict:
    run_dir = Path(run_dir)
    summary = summary or read_json_object(run_dir / "summary.json", "run summary")
    config = read_json_object(run_dir / "config.json", "run config")
    evals = read_metrics(run_dir / "eval.csv")
    final = read_json(run_dir / "final_eval.json") or {}
    prior = read_json(run_dir / "prior_eval.json") or {}
    tc = config["train_config"]
    return {"run_dir": str(run_dir), "checkpoint": summary["model"], "steps": summary["steps"],
            "train_s": summary.get("train_s"), "student_params": summary.get("student_params"),
            "normalized_score": final.get("normalized_score"),
            "task_scores": {t: v["score"] for t, v in final.get("tasks", {}).items()},
            "returns": {t: v["returns"] for t, v in final.get("tasks", {}).items()},
            "prior_returns": {t: v["returns"] for t, v in prior.get("tasks", {}).items()} or None,
            "reward_error": read_json(run_dir / "heldout_reward_error.json"),
            "diagnostics": read_json(run_dir / "diagnostics.json"),
            "curve": [{"step": int(r.step), "normalized_score": float(r.normalized_score)} for r in evals.itertuples()],
            "d_coef": tc["distill"]["d_coef"] if tc["distill"]["teacher"] else 0.0,
            "arm": run_arm(tc["distill"]),
            "latent": tc["distill"]["latent"], "schedule": tc["distill"]["schedule"], "seed": tc["seed"],
            "batch_size": tc["batch_size"], "student_size": tc["student_size"],
            "teacher": dataclasses.asdict(teacher) if teacher else None,
            "teacher_params": (config.get("teacher") or {}).get("params"),
            "eval": {k: final.get(k) for k in ("protocol", "policy", "seed", "episodes", "precision")}
            | {"planner": (final.get("eval_config") or {}).get("planner")},
            "metrics_csv": str(run_dir / "metrics.csv"), "eval_csv": str(run_dir / "eval.csv")}


def run_arm(distill: dict) -> str:
    """The transfer arm of a saved run's distill config: 'value', 'policy', 'all' (both), or
    'reward' (the paper's reward distillation, and the from-scratch runs at d_coef 0)."""
    if not distill.get("teacher"):
        return "reward"  # from scratch: the reward arm at d_coef 0
    on = [distill.get("d_coef", 0) > 0, distill.get("q_coef", 0) > 0, distill.get("pi_coef", 0) > 0]
    if on[1] and on[2]:
        return "all"
    return "value" if on[1] else "policy" if on[2] else "reward"


def default_student(profile: Profile, study_dir: str | Path, seed: int | None = None) -> dict:
    """The record of the profile's own run (with train.seed = `seed` when given): reused when
    notebook 02 trained it, trained here otherwise."""
    if seed is not None:
        profile = profile.replace(**{"train.seed": seed})
    cfg, info = student_config(profile, study_dir)
    return run_student(cfg, info, profile, study_dir)

