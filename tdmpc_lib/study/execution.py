"""Where the study's notebooks are and how they execute: everything the local pool (runner.py)
and Ray (ray_backend.py) share but the executor. An Execution is one notebook, or one sweep
member of it; `schedule` starts each one when what it needs has finished, on whichever executor
it is given; `execute` runs one with papermill in the calling process (a pool worker or a Ray
task); `record` / `not_run` book the outcome in the run's report and study_log.jsonl."""
from __future__ import annotations

import concurrent.futures as cf
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = REPO_ROOT / "notebooks"


@dataclass
class Execution:
    notebook: str
    member: str | None
    overrides: dict = field(default_factory=dict)  # the member's dotted profile changes
    after: list[str] = field(default_factory=list)  # names of the executions it needs

    def out_dir(self, study_dir: Path) -> Path:
        return study_dir / self.notebook / (self.member or "")

    @property
    def name(self) -> str:
        return self.notebook + (f" [{self.member}]" if self.member else "")


def use_this_interpreter_kernel() -> None:
    """Make kernel 'python3' this interpreter's (the venv's kernelspec, installed by ipykernel,
    before any user-wide 'python3' spec; its argv 'python' resolves to sys.executable)."""
    mine = str(Path(sys.prefix) / "share" / "jupyter")
    others = [p for p in os.environ.get("JUPYTER_PATH", "").split(os.pathsep) if p and p != mine]
    os.environ["JUPYTER_PATH"] = os.pathsep.join([mine, *others])


def die_with_the_runner() -> None:
    """Worker initializer: the kernel (Linux) sends this worker SIGTERM when the runner that
    started it dies, even by SIGKILL, so no worker outlives the study; a worker's own kernel
    exits when its parent goes (ipykernel polls JPY_PARENT_PID). Ctrl-C in the terminal reaches
    every process of the group: the worker ignores it and the runner stops it (`_run_local`)."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import ctypes
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the runner died before the call: go now
            os._exit(1)


def execute(notebook_path: str, output_path: str, parameters: dict, cwd: str) -> dict:
    """Worker: run one notebook with papermill; never raises (returns ok / error)."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    os.environ.setdefault("MUJOCO_GL", "osmesa")
    use_this_interpreter_kernel()
    # Kernels write their own start-up chatter to the inherited stderr; keep it in a log file.
    log_path = Path(output_path).with_name("kernel_stderr.log")
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 2)
    tic = time.perf_counter()
    try:
        pm.execute_notebook(notebook_path, output_path, parameters=parameters, cwd=cwd, kernel_name="python3",
                            progress_bar=False, log_output=False)
    except PapermillExecutionError as e:
        return {"ok": False, "error": f"{e.ename}: {e.evalue}", "cell": e.exec_count,
                "seconds": time.perf_counter() - tic}
    except Exception as e:  # kernel died, bad notebook file, ...
        return {"ok": False, "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                "seconds": time.perf_counter() - tic}
    return {"ok": True, "seconds": time.perf_counter() - tic}


def log_line(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def record(study_dir: Path, report: dict, ex: Execution, output: Path, res: dict, log=log_line) -> None:
    """Book one finished execution (res: {'ok', 'seconds', 'error'?}) in the report and study_log.jsonl."""
    entry = {"name": ex.name, "notebook": str(output), "seconds": round(res["seconds"], 1)}
    if res["ok"]:
        report["executed"].append(entry)
        log(f"done {ex.name} in {res['seconds']:.0f} s -> {output}")
    else:
        report["failed"].append({**entry, "error": res["error"]})
        log(f"FAIL {ex.name}: {res['error']}  (executed notebook: {output})")
    with open(study_dir / "study_log.jsonl", "a") as f:
        f.write(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **entry,
                            "ok": res["ok"], "error": res.get("error")}) + "\n")


def not_run(report: dict, ex: Execution, missing: list[str], log=log_line) -> None:
    """Book an execution that cannot run because executions it needs failed."""
    report["failed"].append({"name": ex.name, "notebook": "", "seconds": 0.0,
                             "error": f"not run: it needs {', '.join(missing)}"})
    log(f"skip {ex.name}: it needs a failed execution")


def schedule(todo: list, submit: Callable, outcome: Callable, limit: int, study_dir: Path, report: dict,
             log=log_line) -> None:
    """Run `todo` ([(Execution, its notebook parameters)], dependencies first): start each
    execution with submit(ex, parameters) -> a concurrent.futures.Future once every execution it
    needs has finished well, at most `limit` at a time; book each as it ends, by
    outcome(ex, future) -> {'ok', 'seconds', 'error'?}. One whose dependency failed is not run."""
    todo, pending = list(todo), {ex.name for ex, _ in todo}
    done, failed, running = set(), set(), {}
    while todo or running:
        for ex, parameters in list(todo):  # start what is ready, in order, while there is room
            if len(running) >= limit:
                break
            needs = [n for n in ex.after if n in pending]
            if any(n in failed for n in needs):
                todo.remove((ex, parameters))
                failed.add(ex.name)
                not_run(report, ex, [n for n in needs if n in failed], log)
            elif all(n in done for n in needs):
                todo.remove((ex, parameters))
                log(f"run  {ex.name}")
                running[submit(ex, parameters)] = ex
        if not running:
            continue
        finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
        for fut in finished:
            ex = running.pop(fut)
            res = outcome(ex, fut)
            (done if res["ok"] else failed).add(ex.name)
            record(study_dir, report, ex, ex.out_dir(study_dir) / f"{ex.notebook}.ipynb", res, log)
