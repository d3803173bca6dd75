"""Execute the study's notebooks with papermill, in order, into runs/<profile>/.

Executions (one per notebook, or one per sweep member), in this order:
    01_teacher            one member per teacher (the profile's, then the comparison ones)
    02_distillation       d_coef x seed sweep (0.0 = from scratch), the transfer arms beyond the
                          paper x seed, the curve runs, one run per comparison teacher
    03_latent_ablation    one member per latent mode (plus reward-only)
    04_quantization, 06_rollout_viewer   (on the profile's default distilled student)
    05_results            the figures, from the files the others wrote

Up to `workers` executions run at once, each in its own worker process (and kernel); an
execution starts when what it needs has finished: a student run waits for its teacher's 01
member (a from-scratch run waits for nothing), 04 and 06 for the default student run, 05 for
everything. Shared work is guarded by file locks (pipeline.py), so the dataset and every
teacher are made once. That is the local backend; with backend 'ray' (ray_backend.py) the same
pending executions become Ray tasks that Ray starts when what they need has finished.

An execution is skipped when its folder holds a result.json written for the same parameters
and the same resolved profile, so an interrupted study reruns only what is missing (training
runs resume from their last checkpoint). Each execution writes its executed notebook
(<folder>/<notebook>.ipynb) and its result files into its folder.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import time
from pathlib import Path

from ..files import OutputLock, atomic_write_json
from .execution import (NOTEBOOK_DIR, REPO_ROOT, Execution, die_with_the_runner, execute, log_line, not_run,
                        record)
from .params import check_profile, check_values, default_study_dir, profile_fingerprint, read_result, validate
from .pipeline import teacher_key
from .profiles import PROFILE_FILE, Profile

ORDER = ("01_teacher", "02_distillation", "03_latent_ablation", "04_quantization", "06_rollout_viewer", "05_results")
# Which ready execution takes a free worker first: 04 (one long execution) as soon as the
# distilled runs it quantizes exist, so it runs beside the latent members instead of alone at the end.
START_ORDER = ("01_teacher", "02_distillation", "04_quantization", "06_rollout_viewer", "03_latent_ablation",
               "05_results")


def _fmt(x: float) -> str:
    return format(float(x), "g")


def plan(profile: Profile) -> dict[str, list[Execution]]:
    """The executions of every notebook for a profile (parameters beyond profile/study_dir)."""
    p = profile
    teachers = list(dict.fromkeys([p.teacher, *p.compare_teachers]))
    out: dict[str, list[Execution]] = {nb: [] for nb in ORDER}
    for t in teachers:
        out["01_teacher"].append(Execution("01_teacher", teacher_key(t), {"teacher": t}))
    seen = set()

    def add(nb: str, member: str, params: dict) -> None:
        if (nb, member) not in seen:
            seen.add((nb, member))
            out[nb].append(Execution(nb, member, params))

    for d in p.d_coefs:
        for s in p.seeds:
            add("02_distillation", f"d{_fmt(d)}_s{s}", {"d_coef": float(d), "seed": s})
    if p.curve_length != p.train.steps:  # distilled vs scratch over a longer schedule
        freq = max(1, p.curve_length // max(1, p.curve_eval_points))
        for d in (p.curve_d_coef, 0.0):
            add("02_distillation", f"d{_fmt(d)}_s{p.seeds[0]}_{p.curve_length}st",
                {"d_coef": float(d), "seed": p.seeds[0], "steps": p.curve_length, "eval_freq": freq})
    for t in p.compare_teachers:
        if t != p.teacher:
            add("02_distillation", f"d{_fmt(p.train.distill.d_coef)}_s{p.seeds[0]}_teacher-{teacher_key(t)}",
                {"d_coef": float(p.train.distill.d_coef), "seed": p.seeds[0], "teacher": t})
    for arm in p.arms:  # beyond the paper: value / policy / all-three distillation, every seed
        for s in p.seeds:
            add("02_distillation", f"{arm}_s{s}", {"arm": arm, "seed": s})
    for mode in ("none", *p.latent_modes):
        for s in p.seeds:
            add("03_latent_ablation", f"{mode}_s{s}", {"latent": mode, "seed": s})
    out["04_quantization"].append(Execution("04_quantization", None))
    out["06_rollout_viewer"].append(Execution("06_rollout_viewer", None))
    out["05_results"].append(Execution("05_results", None))
    # What each execution needs. A teacher trained here must exist before its students start; a
    # checkpoint teacher needs nothing (students wait on the dataset's file lock, not on 01's
    # evaluation of the teacher).
    teacher_of = {ex.parameters["teacher"]: ex.name for ex in out["01_teacher"]
                  if ex.parameters["teacher"].startswith("train:") or ex.parameters["teacher"] == "auto"}
    for nb in ("02_distillation", "03_latent_ablation"):
        for ex in out[nb]:
            uses_teacher = (ex.parameters.get("d_coef", p.train.distill.d_coef) > 0 or ex.parameters.get("latent", "none") != "none"
                            or ex.parameters.get("arm", "reward") != "reward")
            spec = ex.parameters.get("teacher", p.teacher)
            ex.after = [teacher_of[spec]] if uses_teacher and spec in teacher_of else []
    default = {s: [ex.name for ex in out["02_distillation"] if ex.member == f"d{_fmt(p.train.distill.d_coef)}_s{s}"]
               for s in p.seeds}
    for ex in out["03_latent_ablation"]:
        if ex.parameters["latent"] == "none":  # the same training run as 02's default: reuse it
            ex.after += default[ex.parameters["seed"]]
    all_default = [n for names in default.values() for n in names]
    out["04_quantization"][0].after = all_default or [ex.name for ex in out["02_distillation"]]
    out["06_rollout_viewer"][0].after = default[p.seeds[0]] or [ex.name for ex in out["02_distillation"]]
    out["05_results"][0].after = [ex.name for nb in ORDER if nb != "05_results" for ex in out[nb]]
    return out


def select(only: str | None) -> list[str]:
    """'02,05_results,viewer' -> notebook names (by number, full name or a word of it)."""
    if not only:
        return list(ORDER)
    chosen = []
    for item in (s.strip() for s in only.split(",") if s.strip()):
        hits = [nb for nb in ORDER if nb == item or nb.startswith(item + "_") or item in nb.split("_", 1)[1]]
        if not hits:
            raise ValueError(f"--only {item!r} matches no notebook; notebooks: {', '.join(ORDER)}")
        chosen += hits
    return [nb for nb in ORDER if nb in chosen]


def is_done(ex: Execution, study_dir: Path, profile: Profile, injected: dict) -> bool:
    result = read_result(ex.out_dir(study_dir))
    if not result or result.get("profile_fingerprint") != profile_fingerprint(profile):
        return False
    recorded = result.get("parameters", {})
    return all(recorded.get(k) == v for k, v in injected.items() if k not in ("threads",))


def prepare(profile: Profile, study_dir: Path) -> None:
    """Write the resolved profile where the notebooks read it."""
    study_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(study_dir / PROFILE_FILE, profile.to_dict())


def pending(profile: Profile, study_dir: Path, chosen: list[str], force: bool, report: dict, log=log_line
            ) -> list[tuple[Execution, dict]]:
    """The executions to run, in START_ORDER, each with its notebook parameters (no `threads`:
    each backend sets it); the ones whose results exist are logged and put in report['skipped']."""
    executions = plan(profile)
    todo = []
    for nb in START_ORDER:
        if nb not in chosen:
            continue
        for ex in executions[nb]:
            injected = {"profile": profile.name, "study_dir": str(study_dir), **ex.parameters}
            if ex.member:
                injected["member"] = ex.member
            check_values(validate(nb, injected))  # a bad parameter fails before any kernel starts
            if not force and is_done(ex, study_dir, profile, injected):
                report["skipped"].append(ex.name)
                log(f"skip {ex.name}: results exist ({ex.out_dir(study_dir)})")
                continue
            todo.append((ex, injected))
    return todo


def run_study(profile: Profile, study_dir: str | Path | None = None, only: str | None = None, workers: int = 1,
              force: bool = False, notebook_dir: str | Path | None = None, log=log_line, backend: str = "local",
              address: str | None = None) -> dict:
    """Execute the study; returns {'executed': [...], 'skipped': [...], 'failed': [...], 'figures': [...]}.

    backend 'local': up to `workers` executions at once in a process pool here. backend 'ray':
    one Ray task per execution on the cluster at `address` (None: a local cluster that ends with
    this call; `workers` is not used, each task's resources are ray_backend.task_resources)."""
    if backend not in ("local", "ray"):
        raise ValueError(f"backend {backend!r}: choose local or ray")
    if address and backend != "ray":
        raise ValueError("--address is for --backend ray (the local backend runs here)")
    study_dir = Path(study_dir or default_study_dir(profile.name)).resolve()
    notebook_dir = Path(notebook_dir or NOTEBOOK_DIR)
    workers = max(1, int(workers))
    threads = profile.threads or max(1, (os.cpu_count() or 1) // workers)
    chosen = select(only)
    check_profile(profile)
    with OutputLock(study_dir, "study folder"):  # one study runner per folder at a time
        return _run_study_locked(profile, study_dir, chosen, workers, threads, force, notebook_dir, log, backend,
                                 address)


def _run_study_locked(profile: Profile, study_dir: Path, chosen, workers: int, threads: int, force: bool,
                      notebook_dir: Path, log, backend: str, address: str | None) -> dict:
    prepare(profile, study_dir)
    report = {"executed": [], "skipped": [], "failed": [], "figures": [], "study_dir": str(study_dir)}
    if backend == "ray":
        log(f"study '{profile.name}' -> {study_dir}  (Ray tasks on {address or 'a local Ray cluster'})")
    else:
        log(f"study '{profile.name}' -> {study_dir}  ({workers} worker{'s' if workers > 1 else ''}, "
            f"{threads} torch thread{'s' if threads > 1 else ''} each)")
    start = time.perf_counter()
    todo = pending(profile, study_dir, chosen, force, report, log)
    if backend == "ray":
        from .ray_backend import run_on_ray
        if todo:  # nothing to run: no cluster to start or join
            run_on_ray(todo, profile, study_dir, notebook_dir, report, address, log)
    else:
        _run_local(todo, study_dir, notebook_dir, workers, threads, report, log)
    figures_dir = figures_path(profile, study_dir)
    report["figures"] = sorted(str(p) for p in figures_dir.glob("*.png")) if figures_dir.is_dir() else []
    report["seconds"] = round(time.perf_counter() - start, 1)
    log(f"finished in {report['seconds']:.0f} s: {len(report['executed'])} executed, {len(report['skipped'])} "
        f"skipped, {len(report['failed'])} failed")
    return report


def _run_local(todo: list[tuple[Execution, dict]], study_dir: Path, notebook_dir: Path, workers: int, threads: int,
               report: dict, log=log_line) -> None:
    """Run the executions in a process pool of `workers`, each when what it needs has finished."""
    todo = [(ex, {**injected, "threads": threads}) for ex, injected in todo]
    pending_names = {ex.name for ex, _ in todo}
    done: set[str] = set()
    failed: set[str] = set()
    running: dict = {}
    ctx = multiprocessing.get_context("spawn")
    pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=die_with_the_runner)
    try:
        _schedule(pool, workers, todo, pending_names, done, failed, running, study_dir, notebook_dir, report, log)
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM: stop the workers now, keep what finished
        for child in multiprocessing.active_children():
            child.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        names = ", ".join(ex.name for ex, _ in running.values()) or "none"
        raise type(e)(f"the study stopped while running {names}; the finished executions are kept: rerun the same "
                      f"command to run the rest") from None
    pool.shutdown()


def _schedule(pool, workers: int, todo, pending_names, done, failed, running, study_dir, notebook_dir, report,
              log) -> None:
    """Start each execution on `pool` when what it needs has finished; record each as it ends."""
    while todo or running:
        # start what is ready, in order, while a worker is free
        for ex, injected in list(todo):
            if len(running) >= workers:
                break
            needs = [n for n in ex.after if n in pending_names]
            if any(n in failed for n in needs):
                todo.remove((ex, injected))
                failed.add(ex.name)
                not_run(report, ex, [n for n in needs if n in failed], log)
                continue
            if all(n in done for n in needs):
                todo.remove((ex, injected))
                out = ex.out_dir(study_dir)
                out.mkdir(parents=True, exist_ok=True)
                output = out / f"{ex.notebook}.ipynb"
                log(f"run  {ex.name}")
                fut = pool.submit(execute, str(notebook_dir / f"{ex.notebook}.ipynb"), str(output), injected,
                                  str(REPO_ROOT))
                running[fut] = (ex, output)
        if not running:
            continue
        finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
        for fut in finished:
            ex, output = running.pop(fut)
            res = fut.result()
            (done if res["ok"] else failed).add(ex.name)
            record(study_dir, report, ex, output, res, log)


def sync_notebooks(notebook_dir: str | Path | None = None, check: bool = False) -> list[str]:
    """Rewrite every notebooks/NN_*.ipynb from its paired py:percent script, without outputs
    (check=True: only list the notebooks that differ from their script)."""
    import jupytext
    import nbformat

    notebook_dir = Path(notebook_dir or NOTEBOOK_DIR)
    stale = []
    for script in sorted(notebook_dir.glob("[0-9][0-9]_*.py")):
        nb = jupytext.read(script)
        nb.metadata.pop("jupytext", None)
        nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
        nb.metadata["language_info"] = {"name": "python"}
        for i, cell in enumerate(nb.cells):  # stable ids keep the .ipynb diff quiet
            cell["id"] = f"cell-{i:02d}"
        text = nbformat.writes(nb) + "\n"
        target = script.with_suffix(".ipynb")
        if not target.is_file() or target.read_text() != text:
            stale.append(target.name)
            if not check:
                target.write_text(text)
    return stale


def figures_path(profile: Profile, study_dir: Path) -> Path:
    if profile.figures_dir:
        path = Path(profile.figures_dir)
        return path if path.is_absolute() else REPO_ROOT / path
    return Path(study_dir) / "figures"

