"""A dry run of the `paper` profile on the CPU, offline: every code path of the paper's setting
executes through the real study runner (papermill, every notebook of runner.ORDER), with
overrides that only make it small.

What it proves beyond the smoke study (tests/test_study.py):
- a 317M-shaped MT30 teacher (random weights, saved as one of our fp16 files instead of the hub
  file) loads in every notebook and is reported with the 317M preset's 317,316,889 parameters;
- the `hub` data source converts public-format MT30 chunk files (TensorDicts of full 501-row
  episodes, written here with `collect.rollout` + `save_chunk`) given as `data.chunk_files`, so
  nothing is downloaded;
- the held-out episodes are collected by that teacher (policy prior with noise, and MPPI);
- the teacher-reward cache over the converted data is built by the distilled run and reused;
- 1M students train at the paper's batch 256, the curve runs evaluate during training, the
  latent ablation (a trained linear projection, PCA) runs with the 317M teacher online (the
  frozen projection differs from the trained one by a flag; the smoke study runs all three);
- every student is evaluated with MPPI (the profile's planner, policy 'plan'), quantized,
  rendered, and 05 draws every figure it has results for into the figures folder given.

One deviation from the profile: the teacher's own evaluation in 01_teacher acts with its policy
prior (`policy='prior'`, a declared parameter of that notebook, injected for 01 only). MPPI with
the 317M teacher costs about 0.5 s per agent step on a 2-core CPU even with 8 samples and one
iteration, so one 500-step evaluation episode alone would take over 4 minutes. The teacher still
plans with MPPI where it collects the held-out 'plan' episodes, and every student's evaluation
plans with MPPI.
"""
import json
import os
import time
from pathlib import Path

import nbformat
import pytest

os.environ.setdefault("MUJOCO_GL", "osmesa")

from tdmpc_lib.study import plots, profiles, results, runner  # noqa: E402
from tdmpc_lib.study.execution import use_this_interpreter_kernel  # noqa: E402
from tdmpc_lib.study.runner import ORDER, run_study  # noqa: E402

pytest.importorskip("papermill")
use_this_interpreter_kernel()

TEACHER_PARAMS = 317_316_889  # trainable parameters of the 317M MT30 preset (the hub's mt30-317M)
TASKS = ["cartpole-balance", "reacher-easy"]  # in the chunk files
EVAL_TASK = "cartpole-balance"  # evaluation and held-out episodes
CHUNKS = ((11, 1), (12, 2))  # (rollout seed, episodes per task) of each chunk file
EPISODES = sum(n for _, n in CHUNKS) * len(TASKS)
NUM_SAMPLES = 8


def _paper_dryrun_profile(teacher: Path, chunk_files: list[Path], figures: Path) -> profiles.Profile:
    return profiles.PAPER.replace(**{
        "teacher.checkpoint": str(teacher), "teacher.compare": (), "device": "cpu",
        "data.chunk_files": tuple(str(p) for p in chunk_files), "data.tasks": EVAL_TASK,
        "data.max_steps": 10, "data.heldout_episodes": 1,
        "eval.tasks": EVAL_TASK, "eval.episodes": 1, "teacher.episodes": 1,
        "train.steps": 2, "train.batch_size": 256, "sweep.d_coefs": (0.0, 0.4), "sweep.seeds": (1,),
        "sweep.arms": ("all",), "sweep.curve_steps": 4, "sweep.curve_eval_points": 2,
        "sweep.latent_modes": ("linear", "pca"), "train.distill.pca_samples": 256,
        "eval.planner.num_samples": NUM_SAMPLES, "eval.planner.num_elites": 2, "eval.planner.num_pi_trajs": 2,
        "eval.planner.iterations": 1,
        "quant.latency_repeats": 1, "quant.error_batch": 32,
        "viewer.steps": 3, "viewer.width": 64, "viewer.height": 64,
        "figures_dir": str(figures),
    })


@pytest.fixture(scope="module")
def paper(tmp_path_factory):
    """The paper profile, made small, executed once for the module (2 workers)."""
    import gc

    from tdmpc_lib.checkpoint import load_checkpoint
    from tdmpc_lib.data.collect import rollout, save_chunk
    from tdmpc_lib.quantize import save_quantized
    from tdmpc_lib.world_model import make_world_model

    root = tmp_path_factory.mktemp("paper_dryrun")
    tic = time.perf_counter()
    # The teacher: the 317M preset with random weights, as our fp16 file (1 GB instead of 2 GB)
    teacher = root / "teacher_mt30_317M_random_fp16.pt"
    model = make_world_model(317, "mt30", seed=0)
    assert model.total_params == TEACHER_PARAMS
    save_quantized(model, teacher, "fp16")
    del model
    gc.collect()
    loaded = load_checkpoint(teacher)
    assert loaded.total_params == TEACHER_PARAMS and loaded.cfg.size == 317
    del loaded
    gc.collect()
    # Public-format MT30 chunks: full episodes (501 rows, as convert_chunks expects for mt30)
    chunk_files = []
    for i, (seed, n) in enumerate(CHUNKS):
        arrays = rollout(TASKS, n, "random", seed=seed, max_steps=500, progress=False)
        assert arrays["obs"].shape[:2] == (n * len(TASKS), 501)
        chunk_files.append(save_chunk(arrays, root / "chunks" / f"chunk_{i}.pt"))
    setup_s = time.perf_counter() - tic

    profile = _paper_dryrun_profile(teacher, chunk_files, root / "figures")
    study_dir = root / "study" / "paper"
    real_pending = runner.pending

    def teacher_prior(*args, **kwargs):  # see the module docstring: 01 evaluates the teacher's prior
        todo = real_pending(*args, **kwargs)
        for ex, injected in todo:
            if ex.notebook == "01_teacher":
                injected["overrides"] = {**injected["overrides"], "eval.policy": "prior"}
        return todo

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runner, "pending", teacher_prior)
        tic = time.perf_counter()
        report = run_study(profile, study_dir, workers=2, log=lambda msg: print(msg, flush=True))
    report["wall_s"] = time.perf_counter() - tic
    print(f"paper dry run: setup {setup_s:.0f} s, study {report['wall_s']:.0f} s; per execution: "
          + ", ".join(f"{e['name']} {e['seconds']:.0f}s" for e in report["executed"]))
    yield {"study_dir": study_dir, "report": report, "profile": profile, "teacher": teacher,
           "chunk_files": chunk_files}
    teacher.unlink(missing_ok=True)  # 1 GB; pytest keeps the last few tmp folders, the rest is small


def _student_runs(study_dir: Path) -> list[Path]:
    return sorted(p.parent for p in (study_dir / "train").glob("*/summary.json"))


def _read(path: Path) -> dict:
    return json.loads(Path(path).read_text())


# ---------------------------------------------------------------------------- the run
def test_every_notebook_executes(paper):
    study_dir, report = paper["study_dir"], paper["report"]
    assert report["failed"] == [], report["failed"]
    assert {e["name"].split(" ")[0] for e in report["executed"]} == set(ORDER)
    assert report["skipped"] == []
    for nb in ORDER:
        copies = list((study_dir / nb).glob(f"**/{nb}.ipynb"))
        assert copies, nb
        for path in copies:
            nbk = nbformat.read(path, as_version=4)
            errors = [o for c in nbk.cells if c.cell_type == "code" for o in c.get("outputs", [])
                      if o.output_type == "error"]
            assert not errors, path
            assert (path.parent / "result.json").is_file(), path
    saved = _read(study_dir / "profile.json")
    assert saved["name"] == "paper" and saved["paper_setting"] is True


def test_teacher_is_the_317M_preset(paper):
    st = results.load_study(paper["study_dir"])
    assert len(st.teachers) == 1
    row = st.teachers.iloc[0]
    assert row["params"] == TEACHER_PARAMS and row["size"] == 317
    assert row["path"] == str(paper["teacher"]) and row["source"] == "file"
    assert row["normalized_score"] is not None and row["teacher_reward_mse_true"] is not None
    record = _read(next((paper["study_dir"] / "01_teacher").glob("*/result.json")))
    assert record["eval"]["policy"] == "prior"  # the one deviation (module docstring)


def test_hub_store_converted_from_the_chunk_files(paper):
    from tdmpc_lib.checkpoint import file_sha256
    from tdmpc_lib.data import open_store
    from tdmpc_lib.data.store import read_manifest

    data = paper["study_dir"] / "data"
    store = open_store(data)
    assert store.num_episodes == EPISODES and store.num_rows == EPISODES * 501
    store.close()
    manifest = read_manifest(data)
    assert manifest["task_set"] == "mt30" and manifest["episode_length"] == 501
    assert [s["source_sha256"] for s in manifest["segments"]] == [file_sha256(p) for p in paper["chunk_files"]]
    stamp = _read(data / "study_data.json")
    assert stamp["spec"]["source"] == "hub" and stamp["episodes"] == EPISODES
    # held-out episodes: collected by the teacher (prior + noise, MPPI), cut at data.max_steps
    heldout = open_store(paper["study_dir"] / "heldout")
    assert heldout.num_episodes == len(paper["profile"].data.heldout)
    assert heldout.num_rows == heldout.num_episodes * (paper["profile"].data.max_steps + 1)
    heldout.close()


def test_teacher_cache_built_over_the_data(paper):
    import numpy as np

    from tdmpc_lib.checkpoint import file_sha256
    from tdmpc_lib.train import TeacherTargetCache

    data = paper["study_dir"] / "data"
    path = TeacherTargetCache.default_path(data, file_sha256(paper["teacher"]))
    assert path.is_file(), sorted(str(p) for p in data.rglob("*"))
    assert np.load(path, mmap_mode="r").shape[0] == EPISODES * 501


def test_students_train_at_batch_256_and_plan(paper):
    runs = _student_runs(paper["study_dir"])
    # d0 and d0.4 (the sweep), the all-three transfer arm, the two 4-update curve runs, two
    # latent variants
    assert len(runs) == 7, [r.name for r in runs]
    for run in runs:
        cfg = _read(run / "config.json")
        tc = cfg["train_config"]
        assert tc["batch_size"] == 256 and tc["student_size"] == 1 and tc["device"] == "cpu", run.name
        if tc["distill"]["teacher"]:
            assert (cfg.get("teacher") or {}).get("params") in (TEACHER_PARAMS, None), run.name
        final = _read(run / "final_eval.json")
        assert final["policy"] == "plan", run.name
        assert final["eval_config"]["planner"]["num_samples"] == NUM_SAMPLES, run.name
        assert final["eval_config"]["planner"]["iterations"] == 1, run.name
        assert list(final["tasks"]) == [EVAL_TASK]
        err = _read(run / "heldout_reward_error.json")
        assert err["transitions"] > 0 and err["mse_true"] is not None, run.name
    distilled = [r for r in runs if "_scratch_" not in r.name]
    assert any((_read(r / "config.json").get("teacher") or {}).get("params") == TEACHER_PARAMS for r in distilled)


def test_curve_runs_evaluate_during_training(paper):
    curves = [r for r in _student_runs(paper["study_dir"]) if "_4st_" in r.name]
    assert len(curves) == 2, [r.name for r in curves]
    for run in curves:
        rows = (run / "eval.csv").read_text().strip().splitlines()
        assert len(rows) == 1 + 2, run.name  # header + curve_eval_points


def test_quantization_viewer_and_figures(paper):
    study_dir, prof = paper["study_dir"], paper["profile"]
    st = results.load_study(study_dir)
    assert list(st.quant["format"]) == ["fp32", *prof.quant.formats]
    assert set(st.runs["latent"]) == {"none", *prof.sweep.latent_modes}
    assert st.runs.loc[st.runs["latent"] == "pca", "pca_explained_variance"].notna().all()
    viewer = _read(study_dir / "06_rollout_viewer" / "result.json")
    assert viewer["rollout"]["steps"] == prof.viewer.steps and viewer["rollout"]["policy"] == "plan"
    assert Path(viewer["mp4"]).stat().st_size > 0
    figures = Path(prof.figures_dir)
    expected = sorted(set(plots.FIGURES) - {"teacher_size"})  # curve runs, but no second teacher to compare
    assert sorted(p.stem for p in figures.glob("*.png")) == expected
    assert sorted(Path(f).stem for f in paper["report"]["figures"]) == expected
