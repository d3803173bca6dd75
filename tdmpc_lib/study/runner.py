"""Execute the study's notebooks with papermill, in order, into runs/<profile>/.

Executions (one per notebook, or one per sweep member: profiles.sweep_members):
    01_teacher            one member per teacher (the profile's, then the comparison ones)
    02_distillation       d_coef x seed sweep (0.0 = from scratch), the transfer arms beyond the
                          paper x seed, the latent ablation x seed, the curve runs, one run per
                          comparison teacher
    04_quantization, 06_rollout_viewer   (on the profile's own run)
    05_results            the figures, from the files the others wrote

Up to `workers` executions run at once, each in its own worker process (and kernel); an
execution starts when what it needs has finished: a student run waits for its teacher's 01
member when the teacher is trained here, 04 and 06 for the profile's own run, 05 for
everything. Shared work is guarded by file locks (pipeline.py), so the dataset and every
teacher are made once. That is the local backend; with backend 'ray' (ray_backend.py) the same
pending executions become Ray tasks that Ray starts when what they need has finished.

An execution is skipped when its folder holds a result.json written for the same member and
overrides and the same resolved profile, so an interrupted study reruns only what is missing
(training runs resume from their last checkpoint). Each execution writes its executed notebook
(<folder>/<notebook>.ipynb) and its result files into its folder.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import time
from pathlib import Path

from ..files import OutputLock, atomic_write_json
from .execution import NOTEBOOK_DIR, REPO_ROOT, Execution, die_with_the_runner, execute, log_line, schedule
from .params import default_study_dir, profile_fingerprint, read_result
from .profiles import PROFILE_FILE, Profile, check_profile, distils, sweep_members, teacher_spec

ORDER = ("01_teacher", "02_distillation", "04_quantization", "06_rollout_viewer", "05_results")


def start_rank(ex: Execution) -> int:
    """Which ready execution takes a free worker first: 04 (one long execution) as soon as the
    runs it quantizes exist, so it runs beside the latent members instead of alone at the end."""
    if ex.notebook == "02_distillation" and "train.distill.latent" in ex.overrides:
        return ORDER.index("06_rollout_viewer") + 1
    return ORDER.index(ex.notebook) + (2 if ex.notebook == "05_results" else 0)


def plan(profile: Profile) -> dict[str, list[Execution]]:
    """Every execution of the study: each notebook's sweep members (profiles.sweep_members, their
    `overrides`), or one execution of a notebook without members; `after`: what each needs."""
    members = sweep_members(profile)
    out = {nb: [Execution(nb, m, changes) for m, changes in members.get(nb, {None: {}}).items()] for nb in ORDER}
    # A teacher trained here must exist before its students start; a checkpoint teacher needs
    # nothing (students wait on the dataset's file lock, not on 01's evaluation of the teacher).
    trained = {}  # teacher spec -> the 01 execution that trains it
    for ex in out["01_teacher"]:
        spec = teacher_spec(profile.replace(**ex.overrides))
        if spec == "auto" or spec.startswith("train:"):
            trained[spec] = ex.name
    own = profile.train
    for ex in out["02_distillation"]:
        member = profile.replace(**ex.overrides)
        spec = teacher_spec(member)
        ex.after = [trained[spec]] if distils(member) and spec in trained else []
    # 04 and 06 use the profile's own run (of every seed): after the members that train it
    own_runs = [ex.name for ex in out["02_distillation"] if ex.member in
                {f"d{format(own.distill.d_coef, 'g')}_s{s}" for s in profile.sweep.seeds}]
    first = [n for n in own_runs if n.endswith(f"_s{profile.sweep.seeds[0]}]")]
    out["04_quantization"][0].after = own_runs
    out["06_rollout_viewer"][0].after = first
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
    """A result.json of the same study profile, member and overrides (the thread count aside)."""
    result = read_result(ex.out_dir(study_dir))
    if not result or result.get("profile_fingerprint") != profile_fingerprint(profile):
        return False
    recorded = result.get("parameters", {})

    def same(a: dict, b: dict) -> bool:
        return {k: v for k, v in a.items() if k != "threads"} == {k: v for k, v in b.items() if k != "threads"}
    return recorded.get("member") == injected["member"] and same(recorded.get("overrides") or {}, injected["overrides"])


def prepare(profile: Profile, study_dir: Path) -> None:
    """Write the resolved profile where the notebooks read it."""
    study_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(study_dir / PROFILE_FILE, profile.to_dict())


def pending(profile: Profile, study_dir: Path, chosen: list[str], force: bool, report: dict, log=log_line
            ) -> list[tuple[Execution, dict]]:
    """The executions to run, in start_rank order, each with its notebook parameters (each backend
    adds its `threads` override); the ones whose results exist are logged and put in
    report['skipped']. plan() resolved every member's profile, so a bad one has failed already."""
    executions = plan(profile)
    todo = []
    for ex in sorted((ex for nb in chosen for ex in executions[nb]), key=start_rank):
        injected = {"profile": profile.name, "member": ex.member, "overrides": {}, "study_dir": str(study_dir)}
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
    todo = [(ex, {**injected, "overrides": {**injected["overrides"], "threads": threads}}) for ex, injected in todo]
    pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                  initializer=die_with_the_runner)
    running: list[Execution] = []

    def submit(ex: Execution, parameters: dict) -> cf.Future:
        running.append(ex)
        output = ex.out_dir(study_dir) / f"{ex.notebook}.ipynb"
        output.parent.mkdir(parents=True, exist_ok=True)
        return pool.submit(execute, str(notebook_dir / f"{ex.notebook}.ipynb"), str(output), parameters,
                           str(REPO_ROOT))

    def outcome(ex: Execution, fut: cf.Future) -> dict:
        running.remove(ex)
        return fut.result()

    try:
        schedule(todo, submit, outcome, workers, study_dir, report, log)
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM: stop the workers now, keep what finished
        for child in multiprocessing.active_children():
            child.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        names = ", ".join(ex.name for ex in running) or "none"
        raise type(e)(f"the study stopped while running {names}; the finished executions are kept: rerun the same "
                      f"command to run the rest") from None
    pool.shutdown()


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

