"""The study on Ray (`--backend ray`): the smoke study runs end to end as Ray tasks on a local
Ray cluster started (and shut down) by the runner, writes the same folders as the local backend,
a second run skips everything; a notebook error fails what needs it without a retry, a crashed
worker is retried; each task's resources; a clear error without Ray."""
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

os.environ.setdefault("MUJOCO_GL", "osmesa")

from tdmpc_lib.study import profiles
from tdmpc_lib.study.params import RESULT_FILE
from tdmpc_lib.study.execution import use_this_interpreter_kernel
from tdmpc_lib.study.runner import ORDER, plan, run_study

pytest.importorskip("papermill")
use_this_interpreter_kernel()

# The smoke study without the latent ablation and the arms beyond the paper: every notebook and a
# dependency of each kind (02's members -> 04, 05 -> figures) as Ray tasks; the members it leaves
# out differ from the others only in their overrides, which tests/test_study.py runs locally.
PROFILE = profiles.SMOKE.replace(**{"sweep.latent_modes": (), "sweep.arms": ()})


def _alive(family) -> list[int]:
    """The (pid, start time) pairs of `family` still running (a reused pid is another process)."""
    import psutil

    out = []
    for pid, started in family:
        try:
            p = psutil.Process(pid)
            if p.create_time() == started and p.status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.fixture(scope="module")
def ray_smoke(tmp_path_factory):
    """The (reduced) smoke study on a local Ray cluster that the runner starts (address None)."""
    ray = pytest.importorskip("ray")
    import psutil

    if ray.is_initialized():
        pytest.skip("a Ray session is already open in this process")
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    family: set[tuple[int, float]] = set()

    def log(msg):  # sample the processes Ray starts under us (raylet, GCS, workers, kernels)
        for p in me.children(recursive=True):
            try:
                if p.pid not in before:
                    family.add((p.pid, p.create_time()))
            except psutil.NoSuchProcess:
                pass

    study_dir = tmp_path_factory.mktemp("ray") / "smoke"
    report = run_study(PROFILE, study_dir, backend="ray", log=log)
    return study_dir, report, family


def test_smoke_study_on_ray_has_the_local_layout(ray_smoke):
    study_dir, report, _ = ray_smoke
    assert report["failed"] == [], report["failed"]
    executions = [ex for nb in ORDER for ex in plan(PROFILE)[nb]]
    assert sorted(e["name"] for e in report["executed"]) == sorted(ex.name for ex in executions)
    # every execution's folder, executed notebook and result.json where the local backend puts them
    for ex in executions:
        out = ex.out_dir(study_dir)
        assert (out / f"{ex.notebook}.ipynb").is_file() and (out / RESULT_FILE).is_file(), ex.name
    results = {p.parent for p in study_dir.rglob(RESULT_FILE)}
    assert results == {ex.out_dir(study_dir) for ex in executions}
    log_lines = (study_dir / "study_log.jsonl").read_text().splitlines()
    assert len(log_lines) == len(executions)
    from tdmpc_lib.study import plots
    assert sorted(Path(f).stem for f in report["figures"]) == sorted(plots.figures_for(PROFILE))


def test_ray_is_shut_down_and_leaves_no_process(ray_smoke):
    import ray

    _, _, family = ray_smoke
    assert not ray.is_initialized()
    assert family, "no Ray process was seen"
    deadline = time.time() + 60  # workers exit after their raylet; give them time, then look
    while _alive(family) and time.time() < deadline:
        time.sleep(0.5)
    left = _alive(family)
    for pid in left:  # do not leak them into the rest of the suite
        import psutil
        psutil.Process(pid).kill()
    assert not left, f"{len(left)} process(es) outlived ray.shutdown()"


def test_second_ray_run_skips_everything(ray_smoke):
    import ray

    study_dir, first, _ = ray_smoke
    again = run_study(PROFILE, study_dir, backend="ray", log=lambda msg: None)
    assert again["executed"] == [] and again["failed"] == []
    assert sorted(again["skipped"]) == sorted(e["name"] for e in first["executed"])
    assert not ray.is_initialized()  # nothing to run: no cluster was started


# ---------------------------------------------------------------------------- failures
def _notebook(path: Path, code: str) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("profile = None\nmember = None\noverrides = {}\nstudy_dir = None")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(code)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_notebook_error_is_not_retried_and_a_dead_worker_is(tmp_path):
    """Stand-in notebooks: 01 raises (reported once, and the distilled 02 member that needs its
    teacher is not run); the from-scratch 02 member kills its Ray worker on the first attempt
    (Ray retries it, and the retry succeeds)."""
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("a Ray session is already open in this process")
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    _notebook(notebooks / "01_teacher.ipynb",
              "from pathlib import Path\n"
              "with open(Path(study_dir) / 'attempts_01', 'a') as f:\n    f.write('x')\n"
              "raise RuntimeError('teacher broke')")
    _notebook(notebooks / "02_distillation.ipynb",
              "import os, time\nfrom pathlib import Path\n"
              "marker = Path(study_dir) / f'crashed_{member}'\n"
              "if not marker.exists():\n"
              "    marker.write_text('x')\n"
              "    os.kill(os.getppid(), 9)  # the kernel's parent is the Ray worker: a worker crash\n"
              "    time.sleep(30)")
    study_dir = tmp_path / "study"
    report = run_study(profiles.SMOKE, study_dir, only="01,02", backend="ray", notebook_dir=notebooks,
                       log=lambda msg: None)
    failed = {f["name"]: f["error"] for f in report["failed"]}
    assert failed == {"01_teacher [train-tiny]": "RuntimeError: teacher broke",
                      **{f"02_distillation [{m}_s1]": "not run: it needs 01_teacher [train-tiny]"
                         for m in ("d0.4", "all", "linear-frozen", "linear", "pca")}}
    assert (study_dir / "attempts_01").read_text() == "x"  # a notebook error runs once
    assert [e["name"] for e in report["executed"]] == ["02_distillation [d0_s1]"]
    assert (study_dir / "crashed_d0_s1").is_file()  # the first attempt died; the retry passed
    assert not ray.is_initialized()


# ---------------------------------------------------------------------------- units
def test_task_resources():
    from tdmpc_lib.study.ray_backend import LIGHT_GPU, task_resources

    gpu = profiles.PAPER  # device cuda, MPPI evaluation, a hub teacher
    assert task_resources("02_distillation", gpu) == {"num_cpus": 1, "num_gpus": 1}
    assert task_resources("04_quantization", gpu)["num_gpus"] == 1
    assert task_resources("01_teacher", gpu)["num_gpus"] == 1  # evaluates with MPPI
    prior = gpu.replace(**{"eval.policy": "prior"})
    assert task_resources("01_teacher", prior)["num_gpus"] == LIGHT_GPU  # only its policy prior
    assert task_resources("01_teacher", prior, {"train.distill.teacher": "train:1"})["num_gpus"] == 1  # trains one
    assert task_resources("06_rollout_viewer", gpu)["num_gpus"] == LIGHT_GPU
    assert task_resources("05_results", gpu) == {"num_cpus": 1, "num_gpus": 0}
    assert task_resources("02_distillation", gpu.replace(threads=4)) == {"num_cpus": 4, "num_gpus": 1}
    for nb in ORDER:  # a CPU profile asks for no GPU anywhere
        assert task_resources(nb, profiles.SMOKE) == {"num_cpus": 1, "num_gpus": 0}


def test_missing_ray_is_one_line(monkeypatch, tmp_path, capsys):
    from tdmpc_lib.study import __main__ as cli
    from tdmpc_lib.study.ray_backend import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ImportError, match="pip install ray"):
        import_ray()
    code = cli.main(["--profile", "smoke", "--backend", "ray", "--only", "05", "--study-dir", str(tmp_path / "s"),
                     "--force"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --backend ray needs Ray") and err.count("\n") == 1


def test_address_needs_the_ray_backend(tmp_path):
    with pytest.raises(ValueError, match="--address is for --backend ray"):
        run_study(profiles.SMOKE, tmp_path / "s", backend="local", address="auto", log=lambda msg: None)


def test_driver_without_the_shared_filesystem_gets_the_files(tmp_path):
    """A task's files reach a driver whose study dir lacks them (or holds other ones); a driver
    on the shared filesystem (the same result.json) fetches nothing."""
    from tdmpc_lib.study import ray_backend
    from tdmpc_lib.study.execution import Execution

    ex = Execution("02_distillation", "d0_s1")
    files = {"02_distillation/d0_s1/result.json": b'{"a": 1}',
             "02_distillation/d0_s1/02_distillation.ipynb": b"{}"}
    fetched = []

    class FakeRay:
        exceptions = SimpleNamespace(RayError=RuntimeError)

        @staticmethod
        def get(ref):
            fetched.append(ref)
            return files

    status = {"name": ex.name, "ok": True, "seconds": 1.0,
              "result_digest": __import__("hashlib").sha256(b'{"a": 1}').hexdigest()}
    assert ray_backend._collect(FakeRay, status, "files", ex, tmp_path, lambda msg: None) == status
    assert fetched == ["files"]
    for rel, data in files.items():
        assert (tmp_path / rel).read_bytes() == data
    fetched.clear()  # now the driver's copy is the task's: nothing to fetch
    ray_backend._collect(FakeRay, status, "files", ex, tmp_path, lambda msg: None)
    assert fetched == []


def test_task_checks_its_dependencies_before_running(tmp_path, monkeypatch):
    """Without Ray: a task whose dependency's results are not on its node says the study dir must
    be shared, and no notebook starts (a failed dependency is not run at all: execution.schedule)."""
    from tdmpc_lib.study import ray_backend

    monkeypatch.setattr(ray_backend, "SHARED_FS_WAIT_S", 0.0)
    spec = {"name": "02_distillation [d0.4_s1]", "notebook": "02_distillation", "study_dir": str(tmp_path),
            "out_dir": str(tmp_path / "02_distillation" / "d0.4_s1"), "profile": profiles.SMOKE.to_dict(),
            "notebook_dir": None, "parameters": {}, "needs": [str(tmp_path / "01_teacher" / "train-tiny")]}
    status, files = ray_backend._task(spec)
    assert not status["ok"] and files == {}
    assert "01_teacher/train-tiny are not in" in status["error"]
    assert "needs the study dir on a filesystem every node shares" in status["error"]
    assert "\n" not in status["error"] and not Path(spec["out_dir"]).exists()
