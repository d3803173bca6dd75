"""Run the study's executions as Ray tasks: `python -m tdmpc_lib.study --backend ray [--address A]`.

Everything but the executor is the local backend's: the plan, the skip-if-done check, and the
scheduling (execution.schedule starts each execution once what it needs has finished). Here an
execution is one Ray task, submitted when it is ready; Ray places it wherever its resources
(task_resources) are free, and the driver waits on the task's future.

Assumptions and guarantees:
- Shared filesystem. Executions read each other's files (the dataset, teachers and student
  runs under the study dir), so every node must see the study dir at the same absolute path,
  as an NFS or Lustre home on a Slurm cluster does. A task checks that the results of the
  executions it needs are visible on its node and fails with a one-line error otherwise. The
  package (and the notebooks, found next to it) must be installed on every node. The driver
  alone may be elsewhere (ray://): each task returns its folder's small files (result.json, the
  executed notebook; not checkpoints), and the driver writes them into its own study dir when
  its copy is missing or differs, so skip-if-done and the report work there too.
- Retries. A task whose worker process or node dies is retried by Ray (max_retries=RETRIES,
  system failures only); a notebook that raises is a result ({'ok': False}), reported as failed
  like the local backend does, never retried (retry_exceptions=False). Training resumes from
  its last checkpoint, so a retried training run does not start over.
- Process lifetime. With address None, ray.init starts a local cluster (GCS, raylet, workers)
  as children of this process that Ray binds to it with PR_SET_PDEATHSIG on Linux: if the
  driver is killed, even with SIGKILL, the cluster goes down with it (Ray's two agent processes
  about a minute later); the workers exit with their raylet and each notebook kernel exits when
  its worker does (ipykernel polls its parent). A normal return shuts the local cluster down.
  On an existing cluster (--address), Ray kills the tasks of a driver that exits.

Ray is imported only here, when the ray backend is chosen, so the package works without it.
"""
from __future__ import annotations

import hashlib
import logging
import socket
import time
from pathlib import Path

from ..files import atomic_write, atomic_write_json
from .execution import NOTEBOOK_DIR, REPO_ROOT, execute, schedule
from .params import RESULT_FILE
from .profiles import PROFILE_FILE, Profile

# Ray retries a task whose worker died this many times (a notebook error is not retried).
RETRIES = 2
# Notebooks that train or plan (MPPI) for long: a whole GPU each.
GPU_NOTEBOOKS = ("02_distillation", "04_quantization")
# Notebooks that only load a model on the profile's device (the viewer, a teacher evaluated with
# its policy prior) share a GPU: Ray places them on a GPU node and packs 1/LIGHT_GPU of them onto
# one GPU. They cannot take no GPU: the device is part of every run's fingerprint, so running
# them on the CPU instead would train the default student again.
LIGHT_GPU = 0.25
# Files a task sends back to the driver at most this large each (checkpoints stay on the cluster).
RETURN_FILE_LIMIT = 16 * 2**20
# How long a task waits for the results it needs to appear on its node before it concludes the
# filesystem is not shared: NFS clients cache directory lookups (a file another node just wrote
# can look absent for up to a minute with the default acdirmax).
SHARED_FS_WAIT_S = 120.0


def import_ray():
    """`ray`, or a one-line ImportError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ImportError("--backend ray needs Ray, which is not installed: pip install ray "
                          "(or pip install -r requirements.txt)") from None
    return ray


def task_resources(notebook: str, profile: Profile, overrides: dict | None = None) -> dict:
    """The Ray resources one execution of `notebook` asks for: {'num_cpus': c, 'num_gpus': g}.

    CPUs: profile.threads (1 when 0); the execution's torch threads are set to the same number.
    GPUs, only when profile.device is CUDA:
      1          02 (training), 04 (MPPI evaluation of every format), 01 when it trains
                 its teacher here (teacher 'train:...' or 'auto') or evaluates it with MPPI
                 (policy 'plan');
      LIGHT_GPU  06 (the viewer) and 01 otherwise (the teacher's policy prior);
      0          05 (plots from files).
    `overrides` are the execution's member's (an 01 member may name its teacher)."""
    cpus = max(1, int(profile.threads))
    if not profile.device.startswith("cuda") or notebook == "05_results":
        return {"num_cpus": cpus, "num_gpus": 0}
    if notebook == "01_teacher":
        teacher = (overrides or {}).get("train.distill.teacher", profile.teacher.checkpoint)
        heavy = profile.eval.policy == "plan" or teacher == "auto" or teacher.startswith("train:")
        return {"num_cpus": cpus, "num_gpus": 1 if heavy else LIGHT_GPU}
    return {"num_cpus": cpus, "num_gpus": 1 if notebook in GPU_NOTEBOOKS else LIGHT_GPU}


def connect(address: str | None) -> bool:
    """Join the cluster at `address`, or start a local one (address None); True when this call
    started Ray (the caller shuts it down). An already initialized Ray (a test, a notebook) is used as is."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    if address is None:
        # A private cluster needs no network: no dashboard (ray.init sends no usage stats either).
        ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    elif address.startswith("ray://"):
        ray.init(address)  # Ray Client takes no local-cluster options
    else:
        # log_to_driver off: each execution's output is in its executed notebook and kernel_stderr.log
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    return True


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _files(out: Path, study_dir: Path) -> dict[str, bytes]:
    """The execution's small files, by path relative to the study dir."""
    return {str(p.relative_to(study_dir)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and not p.is_symlink() and p.stat().st_size <= RETURN_FILE_LIMIT}


def _task(spec: dict) -> tuple[dict, dict]:
    """One execution on a Ray worker, started once the executions it needs have finished (their
    folders: spec['needs']). Returns (status, files): a small status the driver reads, and the
    folder's files, fetched only when the driver's study dir lacks them."""
    status = {"name": spec["name"], "out_dir": spec["out_dir"], "host": socket.gethostname(), "seconds": 0.0}
    study_dir, out = Path(spec["study_dir"]), Path(spec["out_dir"])
    deadline = time.monotonic() + SHARED_FS_WAIT_S
    while True:
        unseen = [n for n in spec["needs"] if not (Path(n) / RESULT_FILE).is_file()]
        if not unseen or time.monotonic() > deadline:
            break
        time.sleep(2.0)
    if unseen:
        names = ", ".join(str(Path(n).relative_to(study_dir)) for n in unseen)
        return {**status, "ok": False,
                "error": f"the results of {names} are not in {study_dir} on {status['host']}: --backend ray needs "
                         f"the study dir on a filesystem every node shares (e.g. NFS)"}, {}
    if not (study_dir / PROFILE_FILE).is_file():  # a driver outside the shared filesystem (ray://)
        atomic_write_json(study_dir / PROFILE_FILE, spec["profile"])
    out.mkdir(parents=True, exist_ok=True)
    notebook_dir = Path(spec["notebook_dir"]) if spec["notebook_dir"] else NOTEBOOK_DIR
    output = out / f"{spec['notebook']}.ipynb"
    res = execute(str(notebook_dir / f"{spec['notebook']}.ipynb"), str(output), spec["parameters"], str(REPO_ROOT))
    return {**status, **res, "result_digest": _digest(out / RESULT_FILE)}, _files(out, study_dir)


def _one_line(e: BaseException) -> str:
    """'WorkerCrashedError: The worker died ...': Ray's messages end with the line that says what happened."""
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[-1] if text else ''}"


def run_on_ray(todo: list, profile: Profile, study_dir: Path, notebook_dir: Path | None, report: dict,
               address: str | None = None, log=print) -> None:
    """Run runner.pending()'s executions as Ray tasks and book each in `report` as it finishes."""
    if profile.device.startswith("cuda:") and profile.device != "cuda:0":
        raise ValueError(f"device {profile.device!r}: with --backend ray use device 'cuda' "
                         f"(Ray shows each task only its own GPU, as cuda:0)")
    ray = import_ray()
    started = connect(address)
    custom_notebooks = notebook_dir and Path(notebook_dir).resolve() != NOTEBOOK_DIR.resolve()
    out_dirs = {ex.name: str(ex.out_dir(study_dir)) for ex, _ in todo}
    files: dict[str, object] = {}  # execution name -> the ObjectRef of its folder's files
    try:
        # max_calls=1: a fresh worker process per execution, so nothing (stderr redirected to the
        # execution's log, GPU memory) carries over to the next one.
        task = ray.remote(num_returns=2, max_retries=RETRIES, retry_exceptions=False, max_calls=1)(_task)

        def submit(ex, injected: dict):
            res = task_resources(ex.notebook, profile, ex.overrides)
            spec = {"name": ex.name, "notebook": ex.notebook, "study_dir": str(study_dir),
                    "out_dir": out_dirs[ex.name], "profile": profile.to_dict(),
                    "needs": [out_dirs[n] for n in ex.after if n in out_dirs],
                    "notebook_dir": str(Path(notebook_dir).resolve()) if custom_notebooks else None,
                    "parameters": {**injected, "overrides": {**injected["overrides"], "threads": res["num_cpus"]}}}
            status_ref, files[ex.name] = task.options(name=ex.name, **res).remote(spec)
            gpus = f", {res['num_gpus']:g} GPU" if res["num_gpus"] else ""
            log(f"  as a Ray task ({res['num_cpus']} CPU{'s' if res['num_cpus'] > 1 else ''}{gpus})")
            return status_ref.future()

        def outcome(ex, fut) -> dict:
            try:
                status = fut.result()
            except ray.exceptions.RayError as e:  # its worker or node died past the retries
                return {"ok": False, "seconds": 0.0, "error": _one_line(e)}
            return _collect(ray, status, files.pop(ex.name), ex, study_dir, log)

        schedule(todo, submit, outcome, max(1, len(todo)), study_dir, report, log)
    finally:
        if started:
            ray.shutdown()


def _collect(ray, status: dict, files_ref, ex, study_dir: Path, log) -> dict:
    """A finished task's status; its files copied into the driver's study dir when they are not there."""
    here = ex.out_dir(study_dir) / RESULT_FILE
    if status.get("result_digest") != _digest(here) or not (ex.out_dir(study_dir) / f"{ex.notebook}.ipynb").is_file():
        # The driver does not share the workers' filesystem: keep a copy of the folder's files here.
        try:
            files = ray.get(files_ref)
        except ray.exceptions.RayError as e:  # its node is gone: the files stay where they are
            log(f"could not copy the files of {ex.name} here: {_one_line(e)}")
            files = {}
        for rel, data in files.items():
            atomic_write(study_dir / rel, lambda f, data=data: f.write(data))
    return status
