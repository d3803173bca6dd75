"""The offline training loop: sample -> update -> log -> evaluate -> checkpoint, resumable.

A run folder RUN_DIR holds
    config.json                 the resolved TrainConfig (+ model config, data and teacher ids)
    metrics.jsonl, metrics.csv  one row per log_freq updates (means over the interval)
    eval.jsonl, eval.csv        one row per evaluation
    checkpoints/step_N.pt       model (save_checkpoint format, loadable by load_checkpoint) plus
                                optimizers, RunningScale, sampler, RNG states, step, metrics position
    checkpoints/step_N.json     the resolved config and the step, beside every checkpoint
    checkpoints/latest.pt       hard link to the newest step_N.pt
    model.pt                    the final student (model only), summary.json
`resume=True` continues from the newest step_N.pt exactly: a run killed at any point (SIGKILL
included) and resumed computes the same losses (bit-identical on CPU fp32) as an uninterrupted
run, because the checkpoint holds everything that influences later updates (model, both Adam
states, RunningScale, sampler generator, python/numpy/torch RNG states, the metric accumulator)
and the metrics files are cut back to the rows written before it.
"""
from __future__ import annotations

import copy
import dataclasses
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

import torch

from ..device import resolve_device
from ..files import OutputLock, atomic_write_json
from ..checkpoint import CheckpointError, atomic_torch_save, load_checkpoint, read_checkpoint_file, save_checkpoint
from ..config import _parse_size
from ..typed import leaf_values
from ..world_model import WorldModel, make_world_model
from .cache import TeacherTargetCache, find_complete_cache
from .config import RESUME_WARN_FIELDS, TrainConfig
from .distill import Distiller, Teacher
from .records import MetricsLog, rng_state, seed_everything, set_rng_state
from .update import LOSS_WEIGHTS, Learner

CHECKPOINT_KIND = "tdmpc-distill-train-state"


class NonFiniteLossError(ValueError):
    """A loss or parameter became NaN/inf; training stopped before writing it anywhere."""


# ---------------------------------------------------------------------------- the trainer
class Trainer:
    """Builds everything a run needs from a TrainConfig; `run()` trains and returns a summary."""

    def __init__(self, cfg: TrainConfig):
        cfg.validate()
        self.cfg = cfg
        self.run_dir = Path(cfg.out)
        self.ckpt_dir = self.run_dir / "checkpoints"
        # One writer per run folder (held until run() returns): a second process started on the
        # same --out stops here, before it reads or writes anything of the run.
        self.lock = OutputLock(self.run_dir, "run folder").acquire()
        self.created_run_dir = not self.run_dir.exists()
        try:
            self._setup()
        except BaseException as e:
            self._discard_failed_start(e)
            self.lock.release()
            raise

    def _discard_failed_start(self, error: BaseException) -> None:
        """After a write error (a full disk ...) or non-finite data before the first checkpoint,
        remove the run folder this process created: an attempt with nothing to resume from leaves
        nothing behind."""
        if isinstance(error, (OSError, NonFiniteLossError)) and self.created_run_dir and not self.checkpoints():
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def _setup(self) -> None:
        from ..data.store import open_store
        from ..data.sampler import SliceSampler

        cfg = self.cfg
        self.device = resolve_device(cfg.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        for stale in self.ckpt_dir.glob("*.tmp"):  # half-written files of a killed save
            stale.unlink(missing_ok=True)
        resume_state = self._resume_state()
        if resume_state is None and self.checkpoints():
            raise ValueError(f"{self.run_dir} already holds a run; pass --resume to continue it or another --out")
        seed_everything(cfg.seed)
        self.store = open_store(cfg.data)
        self.model = self._build_student()
        self.distiller = self._build_distiller()
        self.learner = Learner(self.model, cfg, self.distiller)
        self.sampler = SliceSampler(self.store, cfg.batch_size, cfg.horizon, self.device, seed=cfg.seed)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics, self.evals = MetricsLog(self.run_dir, "metrics"), MetricsLog(self.run_dir, "eval")
        self.step, self.elapsed, self.resumed_from = 0, 0.0, None
        self._sums: dict[str, torch.Tensor] = {}
        self._count = 0
        self.last_row, self.last_eval = None, None
        if resume_state is not None:
            self._load_state(resume_state)
        else:  # a fresh start: drop rows of an earlier attempt that died before its first checkpoint
            self.metrics.truncate({})
            self.evals.truncate({})
            if self.distiller is not None and cfg.distill.latent == "pca":
                self.distiller.fit_pca(self.store, seed=cfg.seed + 1)
            self._write_config_json(self.run_dir / "config.json")

    # ------------------------------------------------------------------ construction
    def checkpoints(self) -> list[Path]:
        """step_N.pt files, newest first (each written atomically, so each one is complete)."""
        return sorted(self.ckpt_dir.glob("step_*.pt"), key=lambda p: int(p.stem.split("_")[1]), reverse=True)

    def _resume_state(self) -> dict | None:
        if not self.cfg.resume or not self.checkpoints():
            return None
        # The newest readable step file, not latest.pt: a kill between writing step_N.pt and
        # relinking latest.pt leaves the newer file authoritative. Files are written atomically,
        # so an unreadable one was damaged afterwards (a full disk, a copy cut short): the
        # previous one is used, with a warning, rather than refusing to resume.
        for latest in self.checkpoints():
            try:
                state = read_checkpoint_file(latest)
                break
            except CheckpointError as e:
                warnings.warn(f"skipping unreadable checkpoint {latest.name} ({e}); resuming from an earlier one",
                              stacklevel=2)
        else:
            raise ValueError(f"no readable checkpoint in {self.ckpt_dir}; start a new run with another --out")
        if state.get("kind") != CHECKPOINT_KIND:
            raise ValueError(f"{latest} is not a training checkpoint of this trainer")
        saved = TrainConfig.from_dict(state["train_config"])
        mine, theirs = self.cfg.training_fields(), saved.training_fields()
        diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        if diff:
            raise ValueError(f"--resume with a different training configuration ({', '.join(diff)}): "
                             f"checkpoint has {[theirs.get(k) for k in diff]}, now {[mine.get(k) for k in diff]}")
        changed = [k for k in RESUME_WARN_FIELDS if getattr(saved, k) != getattr(self.cfg, k)]
        if changed:
            warnings.warn(f"resuming with changed {changed}: training continues but the losses will not be "
                          f"bit-identical to an uninterrupted run", stacklevel=2)
        return state

    def _build_student(self) -> WorldModel:
        cfg, store = self.cfg, self.store
        if cfg.init:
            model = load_checkpoint(cfg.init, device=self.device)
            if model.cfg.size != _parse_size(cfg.student_size):  # the run records the size it trains
                held = model.cfg.size if model.cfg.size is not None else "custom-size"
                raise ValueError(f"--init {cfg.init} holds a {held!r} model but --student-size is "
                                 f"{cfg.student_size!r}; pass --student-size {held} (or drop --init)")
        else:
            model = make_world_model(cfg.student_size, store.task_set, seed=cfg.seed, device=self.device)
        if model.cfg.task_set != store.task_set or model.cfg.obs_dim != store.obs_dim:
            raise ValueError(f"the student is a {model.cfg.task_set} model (obs {model.cfg.obs_dim}) but the data is "
                             f"{store.task_set} (obs {store.obs_dim})")
        return model.eval()

    def _build_distiller(self) -> Distiller | None:
        d, cfg = self.cfg.distill, self.cfg
        if not d.enabled:
            return None
        teacher_device = torch.device(d.teacher_device or cfg.device)
        cached = self._complete_caches()
        if cached is None and self._wait_for_cache_builders():
            cached = self._complete_caches()
        if cached is not None:  # every target is cached: the teacher is not even loaded
            return Distiller(d, None, self.model.cfg.latent_dim, cached, seed=cfg.seed, device=self.device,
                             action_mask=self.model.action_mask)
        teacher = Teacher.load(d.teacher, teacher_device, d.teacher_dtype, d.teacher_autocast, keep=Teacher.keep_for(d))
        if teacher.model.cfg.task_set != self.store.task_set:
            raise ValueError(f"the teacher is a {teacher.model.cfg.task_set} model, the data is {self.store.task_set}")
        self.teacher_info = {"path": teacher.path, "sha256": teacher.sha256, "size": teacher.model.cfg.size,
                             "params": teacher.total_params}
        caches = {}
        for kind in d.cached_kinds:
            path = TeacherTargetCache.path_of(d.cache, cfg.data, teacher.sha256, kind)
            TeacherTargetCache.build(teacher, self.store, path, d.cache_batch_size, d.cache_precision,
                                     d.cache_tolerance, progress=cfg.progress, kind=kind,
                                     wait=True)  # at once if complete; after a parallel run's build
            caches[kind] = TeacherTargetCache(path, self.device)
            caches[kind].check(self.store, teacher.sha256)
        if caches:
            self.teacher_info["cache"] = self._cache_info(caches)
            if not d.needs_teacher_model:
                teacher = None  # every target comes from the caches: free the teacher's memory
        return Distiller(d, teacher, self.model.cfg.latent_dim, caches, seed=cfg.seed, device=self.device,
                         action_mask=self.model.action_mask)

    def _wait_for_cache_builders(self) -> bool:
        """Before the teacher is loaded: wait while other processes build this run's caches (a
        parallel run of the same dataset), one line saying so. False when there is nothing to
        wait for (no cache, a latent term that needs the teacher anyway, a teacher by name)."""
        from ..checkpoint import cached_file_sha256

        d = self.cfg.distill
        if not d.cached_kinds or d.needs_teacher_model or not Path(d.teacher).is_file():
            return False
        sha = cached_file_sha256(d.teacher)
        for kind in d.cached_kinds:
            path = TeacherTargetCache.path_of(d.cache, self.cfg.data, sha, kind)
            if path.parent.is_dir():  # a builder makes the folder first; without it nobody builds there
                OutputLock(path, "teacher cache", wait=True).acquire().release()
        return True

    @staticmethod
    def _cache_info(caches: dict) -> dict:
        """What config.json records of the caches (the reward cache's fields at the top level)."""
        keys = ("precision", "bf16_max_abs_err", "build_s")
        info = {kind: {"path": str(c.path), **{k: c.meta.get(k) for k in keys}} for kind, c in caches.items()}
        return {**info.get("reward", {}), "kinds": info}

    def _complete_caches(self) -> dict[str, TeacherTargetCache] | None:
        """The finished caches of this teacher and dataset, when every target the terms need is
        cached (no latent term); else None."""
        d = self.cfg.distill
        kinds = d.cached_kinds
        if not kinds or d.needs_teacher_model:
            return None
        caches = {}
        for kind in kinds:
            cache = find_complete_cache(self.store, self.cfg.data, d.teacher, d.cache, self.device, kind)
            if cache is None:
                return None
            caches[kind] = cache
        meta = next(iter(caches.values())).meta
        self.teacher_info = {"path": d.teacher, "sha256": meta["teacher_sha256"], "size": meta.get("teacher_size"),
                             "cache": self._cache_info(caches)}
        return caches

    def _write_config_json(self, path: Path, **extra) -> None:
        info = {"train_config": self.cfg.to_dict(), "model_config": self.model.cfg.to_dict(),
                "student_params": self.model.total_params,
                "data": {"path": str(self.cfg.data), "task_set": self.store.task_set, "rows": self.store.num_rows,
                         "episodes": self.store.num_episodes},
                "teacher": getattr(self, "teacher_info", None),
                "versions": {"python": sys.version.split()[0], "torch": torch.__version__}, **extra}
        atomic_write_json(path, info)

    # ------------------------------------------------------------------ checkpoints
    def save(self) -> Path:
        self._check_finite()
        path = self.ckpt_dir / f"step_{self.step}.pt"
        save_checkpoint(self.model, path, kind=CHECKPOINT_KIND, step=self.step, train_config=self.cfg.to_dict(),
                        learner=self.learner.state_dict(), sampler=self.sampler.state_dict(),
                        rng=rng_state(self.device), metrics_position={"metrics": self.metrics.position(),
                                                                      "eval": self.evals.position()},
                        accumulator={"sums": {k: v.detach().cpu() for k, v in self._sums.items()},
                                     "count": self._count},
                        elapsed=self.elapsed, teacher=getattr(self, "teacher_info", None))
        self._write_config_json(path.with_suffix(".json"), step=self.step, checkpoint=str(path))
        tmp = self.ckpt_dir / f".latest.{os.getpid()}.tmp"
        try:
            if tmp.exists():
                tmp.unlink()
            os.link(path, tmp)  # atomic 'latest': a hard link renamed over the old one
        except OSError:
            atomic_torch_save(read_checkpoint_file(path), tmp)
        os.replace(tmp, self.ckpt_dir / "latest.pt")
        self._prune()
        return path

    def _prune(self) -> None:
        keep = self.cfg.keep_checkpoints
        if keep <= 0:
            return
        steps = sorted(int(p.stem.split("_")[1]) for p in self.ckpt_dir.glob("step_*.pt"))
        for s in steps[:-keep]:
            for suffix in (".pt", ".json"):
                (self.ckpt_dir / f"step_{s}{suffix}").unlink(missing_ok=True)

    def _load_state(self, state: dict) -> None:
        model_state = {k: v.to(self.device) for k, v in state["model"].items()}
        self.model.load_state_dict(model_state, strict=True)
        self.learner.load_state_dict(state["learner"])
        self.sampler.load_state_dict(state["sampler"])
        set_rng_state(state["rng"], self.device)
        self.step, self.elapsed = int(state["step"]), float(state.get("elapsed", 0.0))
        self.metrics.truncate(state["metrics_position"]["metrics"])
        self.evals.truncate(state["metrics_position"]["eval"])
        self.last_row, self.last_eval = self.metrics.last(), self.evals.last()
        acc = state["accumulator"]
        self._sums = {k: v.to(self.device) for k, v in acc["sums"].items()}
        self._count = int(acc["count"])
        self.resumed_from = self.step

    # ------------------------------------------------------------------ logging and evaluation
    def _accumulate(self, out: dict) -> None:
        for k, v in out.items():
            v = v.detach().to(self.device, torch.float64)
            self._sums[k] = self._sums[k] + v if k in self._sums else v
        self._count += 1

    def _finite_parameters(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.model.parameters())

    def _non_finite_message(self, step: int, what: str) -> str:
        kept = self.checkpoints()
        return (f"non-finite values in {what} at update {step}: training stopped, the last good checkpoint "
                f"({kept[0].name if kept else 'none yet'}) is kept; lower lr or the distillation coefficients, "
                f"or check the data for NaN/inf rewards")

    def _check_finite(self) -> None:
        """Stop before a NaN/inf reaches a log row or a checkpoint (a sync only at these points)."""
        bad = sorted(k for k, v in self._sums.items() if not bool(torch.isfinite(v)))
        if bad:
            raise NonFiniteLossError(self._non_finite_message(self.step, ", ".join(bad)))
        if not self._finite_parameters():
            raise NonFiniteLossError(self._non_finite_message(self.step, "the model's parameters"))

    def _log(self, interval_s: float, interval_steps: int) -> dict:
        self._check_finite()
        row = {"step": self.step}
        row.update({k: float(v) / self._count for k, v in self._sums.items()})
        if self.distiller is not None:
            row.update(self.distiller.metrics())
        row.update(updates_per_s=interval_steps / max(interval_s, 1e-9), elapsed_s=self.elapsed)
        self.metrics.write(row)
        self._sums, self._count = {}, 0
        self.last_row = row
        return row

    def evaluate(self) -> dict:
        """Evaluate a copy of the student; the training RNG streams are left untouched."""
        from ..evaluate import evaluate

        cfg = self.cfg
        saved = rng_state(self.device)
        try:
            result = evaluate(copy.deepcopy(self.model), dataclasses.replace(cfg.eval, device=cfg.device),
                              progress=False)
        finally:
            set_rng_state(saved, self.device)
        row = {"step": self.step, "normalized_score": result["normalized_score"], "protocol": result["protocol"],
               "policy": result["policy"], "episodes": result["episodes"], "seed": result["seed"],
               **{f"score/{t}": v["score"] for t, v in result["tasks"].items()}}
        self.evals.write(row)
        self.last_eval = row
        return row

    # ------------------------------------------------------------------ the loop
    def run(self) -> dict:
        """Train to cfg.steps (from where the run stands), then release the run folder. Ctrl-C or
        SIGTERM (tdmpc_lib.cli.Terminated) re-raise with a message saying where to resume from;
        nothing is saved on the way out (the newest checkpoint is complete)."""
        try:
            return self._run()
        except (OSError, NonFiniteLossError) as e:
            self._discard_failed_start(e)
            raise
        except KeyboardInterrupt as e:
            saved = self.checkpoints()
            where = f"training stopped at step {self.step} of {self.cfg.steps} in {self.run_dir}; "
            if saved:
                where += (f"its newest checkpoint is {saved[0].name}: rerun the same command with --resume to "
                          f"continue from it")
            else:
                where += "no checkpoint was written yet: rerun the same command to start it again"
            raise type(e)(where) from None
        finally:
            self.lock.release()

    def _run(self) -> dict:
        from tqdm.auto import tqdm

        cfg = self.cfg
        wandb_run = _init_wandb(cfg, self.run_dir)
        bar = tqdm(total=cfg.steps, initial=self.step, desc="train", unit="upd", disable=not cfg.progress,
                   file=sys.stderr, dynamic_ncols=True)
        tic, tic_step, paused, last_saved = time.perf_counter(), self.step, 0.0, None
        while self.step < cfg.steps:
            batch = self.sampler.sample()
            try:
                out = self.learner.update(batch, self.step)
            except (IndexError, RuntimeError) as e:  # e.g. two-hot indices of a NaN target
                bad = [k for k in ("obs", "action", "reward") if not torch.isfinite(getattr(batch, k)).all()]
                if bad:  # a store written around the converter's checks (it refuses NaN/inf rows)
                    raise NonFiniteLossError(
                        f"the dataset {cfg.data} holds NaN/inf in {', '.join(bad)} (drawn at update {self.step + 1}); "
                        f"rebuild it with python -m tdmpc_lib.data convert, which refuses such rows") from None
                if self._finite_parameters():
                    raise
                raise NonFiniteLossError(self._non_finite_message(self.step + 1, "the model's parameters")) from e
            self.step += 1
            self._accumulate(out)
            bar.update(1)
            if self.step % cfg.log_freq == 0 or self.step == cfg.steps:
                now = time.perf_counter()
                self.elapsed += now - tic - paused
                row = self._log(now - tic - paused, self.step - tic_step)
                tic, tic_step, paused = now, self.step, 0.0
                bar.set_postfix({k: f"{row[k]:.3g}" for k in ("total_loss", "consistency_loss", "reward_loss",
                                                               "value_loss", "distill_reward_loss") if k in row})
                if wandb_run is not None:
                    wandb_run.log({f"train/{k}": v for k, v in row.items()}, step=self.step)
            t0 = time.perf_counter()  # evaluation and checkpoint time is not training time
            if cfg.eval_freq and self.step % cfg.eval_freq == 0:
                ev = self.evaluate()
                if wandb_run is not None:
                    wandb_run.log({f"eval/{k}": v for k, v in ev.items() if not isinstance(v, str)}, step=self.step)
            if self.step % cfg.checkpoint_freq == 0 or self.step == cfg.steps:
                last_saved = self.save()
            paused += time.perf_counter() - t0
        bar.close()
        if last_saved is None and not (self.ckpt_dir / f"step_{self.step}.pt").exists():
            last_saved = self.save()
        if cfg.eval_final and (self.last_eval is None or self.last_eval["step"] != self.step):
            self.evaluate()
        model_path = self.run_dir / "model.pt"
        save_checkpoint(self.model, model_path, step=self.step, train_config=cfg.to_dict())
        summary = {"run_dir": str(self.run_dir), "steps": self.step, "resumed_from": self.resumed_from,
                   "checkpoint": str(self.ckpt_dir / f"step_{self.step}.pt"), "model": str(model_path),
                   "student_params": self.model.total_params, "teacher": getattr(self, "teacher_info", None),
                   "train_s": self.elapsed, "metrics": self.last_row, "eval": self.last_eval}
        atomic_write_json(self.run_dir / "summary.json", summary)
        if wandb_run is not None:
            wandb_run.finish()
        return summary


def _init_wandb(cfg: TrainConfig, run_dir: Path):
    """Optional Weights & Biases logging; a missing package is a warning, never an error."""
    if not cfg.wandb_project:
        return None
    try:
        import wandb
    except ImportError:
        warnings.warn("wandb_project is set but wandb is not installed; logging to CSV/JSONL only", stacklevel=2)
        return None
    return wandb.init(project=cfg.wandb_project, config=cfg.to_dict(), dir=str(run_dir), name=run_dir.name,
                      id=run_dir.name, resume="allow")


def loss_terms(cfg: TrainConfig) -> list[dict]:
    """Every loss term of the finished run `cfg` (its last checkpoint, with its optimizer and
    distiller state) on the next batch its sampler draws, each with the config field that weighs
    it: [{'term', 'value', 'weight_field', 'weight'}]. One update runs in memory; nothing is
    written (the run folder's lock is held meanwhile)."""
    trainer = Trainer(dataclasses.replace(cfg, resume=True, progress=False))
    try:
        out = trainer.learner.update(trainer.sampler.sample(), step=max(0, trainer.step - 1))
    finally:
        trainer.lock.release()
    fields = leaf_values(cfg)
    rows = []
    for term, key in LOSS_WEIGHTS.items():
        if f"{term}_loss" not in out:
            continue
        # d_coef as its schedule set it at this step; the policy's own loss has weight 1
        weight = out["d_coef"] if term == "distill_reward" else 1.0 if key is None else fields[key]
        rows.append({"term": term, "value": float(out[f"{term}_loss"]), "weight_field": key or "-",
                     "weight": float(weight)})
    return rows


def train(config: TrainConfig | dict | None = None, **overrides) -> dict:
    """Train (or resume) a student; returns the run summary (see Trainer.run).

    `train(TrainConfig(...))`, `train({'data': ..., 'steps': 1000})` or
    `train(data=..., steps=1000, distill={'teacher': ..., 'd_coef': 0.45})`."""
    if config is None:
        config = TrainConfig()
    if not isinstance(config, (TrainConfig, dict)):
        raise TypeError(f"train() takes a TrainConfig or a dict of its fields, got {type(config).__name__}")
    if isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    if overrides:
        d = config.to_dict()
        distill = overrides.pop("distill", None)
        d.update(overrides)
        if distill is not None:
            d["distill"].update(distill if isinstance(distill, dict) else distill.__dict__)
        config = TrainConfig.from_dict(d)
    return Trainer(config).run()


def build_teacher_cache(data: str, teacher: str, path: str | None = "auto", device: str = "cpu",
                        teacher_dtype: str = "fp32", precision: str = "auto", tolerance: float = 0.02,
                        batch_size: int = 4096, progress: bool = True, kinds: tuple[str, ...] = ("reward",)
                        ) -> dict[str, TeacherTargetCache]:
    """Compute (or finish, or just open) the teacher-target caches of `kinds` ('reward', 'value',
    'policy', 'value_randomK') of a dataset, {kind: cache}: run this once, then every training run
    with `cache='auto'` (or this path) and the same teacher reuses them. The teacher is loaded
    once, and only when a cache is missing or unfinished."""
    from ..data.store import open_store

    store = open_store(data)
    caches = {kind: find_complete_cache(store, data, teacher, path or "auto", kind=kind) for kind in kinds}
    missing = [kind for kind, cache in caches.items() if cache is None]
    if missing:
        keep = ("pi", "Q") if set(missing) != {"reward"} else ()
        t = Teacher.load(teacher, torch.device(device), teacher_dtype, keep=keep)
        for kind in missing:
            cache_path = TeacherTargetCache.path_of(path or "auto", data, t.sha256, kind)
            caches[kind] = TeacherTargetCache.build(t, store, cache_path, batch_size, precision, tolerance, progress,
                                                    kind=kind)
            caches[kind].check(store, t.sha256)
    return caches
