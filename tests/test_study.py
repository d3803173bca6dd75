"""The study: every notebook executes under papermill with the smoke profile, a bad parameter
fails the first cell after `parameters` with a one-line message, the runner skips executions
whose results exist, the viewer builds its widgets and renders frames (OSMesa on the CPU), and
the stored notebooks are clean (no outputs, paired with their py:percent scripts)."""
import json
import os
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest

os.environ.setdefault("MUJOCO_GL", "osmesa")

from tdmpc_lib.study import params, profiles  # noqa: E402
from tdmpc_lib.study.params import PARAMETERS, ParameterError, resolve, validate  # noqa: E402
from tdmpc_lib.study.execution import NOTEBOOK_DIR, use_this_interpreter_kernel  # noqa: E402
from tdmpc_lib.study.runner import ORDER, plan, prepare, run_study, select, sync_notebooks  # noqa: E402

pytest.importorskip("papermill")
use_this_interpreter_kernel()


@pytest.fixture(scope="module")
def smoke(smoke_study):
    """The whole smoke study (conftest.py: executed once per session, shared with test_browser)."""
    return smoke_study


def _outputs(path: Path):
    nb = nbformat.read(path, as_version=4)
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


# ---------------------------------------------------------------------------- the smoke study
def test_every_notebook_executes_under_papermill(smoke):
    study_dir, report = smoke
    assert report["failed"] == [], report["failed"]
    executed = {e["name"].split(" ")[0] for e in report["executed"]}
    assert executed == set(ORDER)
    for nb in ORDER:
        copies = list((study_dir / nb).glob(f"**/{nb}.ipynb"))
        assert copies, nb
        for path in copies:
            assert not [o for o in _outputs(path) if o.output_type == "error"], path
            assert (path.parent / "result.json").is_file(), path
    print(f"smoke study: {report['wall_s']:.0f} s; per execution: "
          + ", ".join(f"{e['name']} {e['seconds']:.0f}s" for e in report["executed"]))


def test_figures_and_results_come_from_files(smoke):
    from tdmpc_lib.study import plots, results

    study_dir, report = smoke
    names = sorted(Path(f).stem for f in report["figures"])
    assert names == sorted(plots.figures_for(profiles.SMOKE)) == sorted(set(plots.FIGURES) - {"score_vs_steps", "teacher_size"})
    st = results.load_study(study_dir)
    assert len(st.teachers) == 1 and st.teachers["normalized_score"].notna().all()
    assert set(st.runs["latent"]) == {"none", *profiles.SMOKE.sweep.latent_modes}
    assert set(st.runs["d_coef"]) == set(profiles.SMOKE.sweep.d_coefs)
    # the profile's own run, quantized by 04, is the d_coef 0.4 member's training run (trained once)
    own = st.runs[(st.runs["latent"] == "none") & (st.runs["d_coef"] == 0.4) & (st.runs["arm"] == "reward")]["run_dir"]
    assert len(own) == 1 and set(st.quant["checkpoint"]) == {str(Path(own.iloc[0]) / "model.pt")}
    # the transfer arm beyond the paper: all three terms, logged, with held-out diagnostics
    every = st.runs[st.runs["arm"] == "all"]
    logged = results.loss_columns(results.read_metrics(Path(every["run_dir"].iloc[0]) / "metrics.csv"))
    assert {"consistency_loss", "reward_loss", "value_loss", "distill_reward_loss", "distill_value_loss",
            "distill_policy_loss"} <= set(logged)
    assert len(every) == 1 and every["d_coef"].iloc[0] == 0.4
    diag = every["diagnostics"].iloc[0]
    assert set(diag["per_task"]) == set(profiles.SMOKE.eval.tasks.split(",")) and "q_action_std" in diag["mean"]
    # and on the student's own episodes: its Q beside the teacher's Q of the same states and actions
    assert all(v["own_q_over_teacher"] is not None for v in diag["per_task"].values())
    assert st.runs.loc[st.runs["latent"] == "pca", "pca_explained_variance"].notna().all()
    # where along the episodes the return comes from: every tenth of every evaluated episode of the
    # teacher and of each arm without a latent term, summing to the episode's return
    prof = st.episode_profile(profiles.SMOKE)
    assert list(dict.fromkeys(prof["arm"])) == ["teacher", "scratch", "d_coef 0.4", "reward+value+policy"]
    per_episode = prof.groupby(["arm", "task", "episode"])["reward"].agg(["size", "sum"])
    assert (per_episode["size"] == 10).all()
    scratch = st.runs[(st.runs["d_coef"] == 0) & (st.runs["arm"] == "reward")]["run_dir"].iloc[0]
    final = json.loads((Path(scratch) / "final_eval.json").read_text())["tasks"]
    assert [per_episode.loc[("scratch", t, 0), "sum"] * 50 for t in final] == pytest.approx(
        [v["returns"][0] for v in final.values()], abs=1e-2)
    assert list(st.quant["format"]) == ["fp32", *profiles.SMOKE.quant.formats]
    # every execution saved the profile it ran: the study's, with its member's changes
    pca = json.loads((study_dir / "02_distillation" / "pca_s1" / "result.json").read_text())
    assert pca["config"]["train"]["distill"]["latent"] == "pca" and pca["parameters"]["member"] == "pca_s1"
    # every arm of the study has every episode's return, and an rliable aggregate with a CI
    arms = st.arms(profiles.SMOKE)
    assert set(arms) == {"teacher", "random", "scratch", "d_coef 0.4", "reward+value+policy", *profiles.SMOKE.quant.formats,
                         *(f"d_coef 0.4 + latent {m}" for m in profiles.SMOKE.sweep.latent_modes)}
    tasks = profiles.SMOKE.eval.tasks.split(",")
    assert all(sorted(a) == sorted(tasks) and all(len(v) == 1 for v in a.values()) for a in arms.values())
    agg = st.aggregate(profiles.SMOKE)
    assert all(g["iqm_ci"][0] <= g["iqm"] <= g["iqm_ci"][1] and g["tasks"] == len(tasks) for g in agg.values())
    # the mechanism metric: held-out reward errors for every student, and the teacher's own
    assert st.runs["reward_mse_true"].notna().all() and st.runs["reward_mse_teacher"].notna().all()
    assert st.teachers["teacher_reward_mse_true"].notna().all()
    assert (study_dir / "05_results" / "aggregate.json").is_file()


def test_dataset_and_heldout_are_made_once(smoke):
    """Every notebook asks for the dataset; only the first one makes it (a stamp that never
    matched its own spec once made every student rebuild the store under the others' feet)."""
    from tdmpc_lib.study import pipeline

    study_dir, _ = smoke
    stamps = [study_dir / d / pipeline.DATA_STAMP for d in ("data", "heldout")]
    before = [p.stat().st_mtime_ns for p in stamps]
    assert pipeline.ensure_dataset(profiles.SMOKE, study_dir) == study_dir / "data"
    assert pipeline.ensure_heldout(profiles.SMOKE, study_dir) == study_dir / "heldout"
    assert [p.stat().st_mtime_ns for p in stamps] == before
    viewer = json.loads((study_dir / "06_rollout_viewer" / "result.json").read_text())
    assert Path(viewer["mp4"]).stat().st_size > 0 and Path(viewer["gif"]).stat().st_size > 0
    assert viewer["rollout"]["steps"] == profiles.SMOKE.viewer.steps


def test_takeover_data_comes_from_a_round_0_student(tmp_path):
    """data.takeover: the round-0 student (the value arm, first seed) trains on the dataset; the
    students' store is a copy of it plus one student-then-teacher episode per task and step,
    made once; every student run trains on it, the round-0 student and teachers on the dataset."""
    from tdmpc_lib.data import open_store
    from tdmpc_lib.study import pipeline

    prof = profiles.SMOKE.replace(**{"data.source": "collect", "data.tasks": "cartpole-balance", "data.max_steps": 8,
                                     "data.mixture": ("random", "random+0"), "teacher.checkpoint": "tdmpc-opt-mt30-1M",
                                     "data.takeover": (2, 5), "eval.planner.num_samples": 16,
                                     "eval.planner.num_elites": 4, "eval.planner.num_pi_trajs": 2})
    prepare(prof, tmp_path)  # the resolved profile, as the runner writes it for the notebooks
    path = pipeline.ensure_training_data(prof, tmp_path)
    assert path == tmp_path / "data_takeover"
    base, store = open_store(tmp_path / "data"), open_store(path)
    assert store.num_episodes == base.num_episodes + 2 and store.num_rows == base.num_rows + 2 * 9
    np.testing.assert_array_equal(store.obs[:base.num_rows], base.obs[:])
    round0, _ = pipeline.takeover_student_config(prof, tmp_path)
    assert round0.data == str(tmp_path / "data") and round0.distill.q_coef == 1.0 and round0.seed == 1
    took = store.manifest["segments"][-1]["collected"]
    assert took["takeover"] == {"student": str(Path(round0.out) / "model.pt"), "steps": [2, 5]}
    assert took["seed"] == prof.data.seed + pipeline.TAKEOVER_SEED_OFFSET and took["policy"] == "plan"
    stamp = path / pipeline.DATA_STAMP
    made = json.loads(stamp.read_text())
    assert len(made["takeover_returns"]["cartpole-balance"]) == 2 and made["episodes"] == store.num_episodes
    mtime = stamp.stat().st_mtime_ns
    assert pipeline.ensure_training_data(prof, tmp_path) == path and stamp.stat().st_mtime_ns == mtime
    # every member trains on the same takeover data, whatever its own terms and seed
    for name in ("d0_s1", "all_s1", "linear_s1"):
        member = prof.replace(**profiles.sweep_members(prof)["02_distillation"][name])
        assert pipeline.takeover_student_config(member, tmp_path)[0] == round0
        assert pipeline.student_config(member, tmp_path)[0].data == str(path)
    assert stamp.stat().st_mtime_ns == mtime
    # other takeover steps: other data at the same path, so the runs on it are new runs
    before = pipeline.student_config(member, tmp_path)[0].out
    other = prof.replace(**{"data.takeover": (5, 2)})
    prepare(other, tmp_path)
    assert pipeline.student_config(other.replace(**profiles.sweep_members(other)["02_distillation"]["linear_s1"]),
                                   tmp_path)[0].out != before
    assert json.loads(stamp.read_text())["key"] != made["key"]
    assert "plus 24 student-then-teacher" in profiles.MINI_TAKEOVER.caveat
    with pytest.raises(ParameterError, match="data.takeover .* needs data.source 'collect'"):
        profiles.SMOKE.replace(**{"data.takeover": (2,)})


def test_arm_labels_name_the_terms_a_run_has():
    from tdmpc_lib.study.pipeline import run_arm
    from tdmpc_lib.study.results import arm_label

    def label(**distill):
        distill = {"teacher": "t.pt", "d_coef": 0.0, "q_coef": 0.0, "pi_coef": 0.0, **distill}
        return arm_label({"arm": run_arm(distill), "d_coef": distill["d_coef"], "latent": "none"})
    assert label(teacher=None) == "scratch" and label(d_coef=0.45) == "d_coef 0.45"
    assert label(q_coef=1.0) == "value distill" and label(pi_coef=1.0) == "policy distill"
    assert label(d_coef=0.45, q_coef=1.0, pi_coef=1.0) == "reward+value+policy"
    assert label(q_coef=1.0, pi_coef=1.0) == "value+policy"  # no reward term: not named after it


def test_runner_skips_existing_results(smoke):
    study_dir, first = smoke
    tic = time.perf_counter()
    again = run_study(profiles.SMOKE, study_dir, workers=2, log=lambda msg: None)
    assert again["executed"] == [] and again["failed"] == []
    assert len(again["skipped"]) == len(first["executed"])
    assert time.perf_counter() - tic < 30
    # a removed result (an interrupted execution) is the only one that runs again
    (study_dir / "05_results" / "result.json").unlink()
    third = run_study(profiles.SMOKE, study_dir, only="05", workers=1, log=lambda msg: None)
    assert [e["name"] for e in third["executed"]] == ["05_results"] and third["failed"] == []


# ---------------------------------------------------------------------------- bad parameters
def test_results_notebook_on_an_empty_study_says_what_to_run(tmp_path):
    """05 opened before any study ran (a fresh clone): one line naming the fix, from notebooks/."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    with pytest.raises(PapermillExecutionError) as err:
        pm.execute_notebook(str(NOTEBOOK_DIR / "05_results.ipynb"), str(tmp_path / "05.ipynb"), kernel_name="python3",
                            parameters={"study_dir": str(tmp_path / "empty"),
                                        "overrides": {"figures_dir": str(tmp_path / "f")}},
                            cwd=str(NOTEBOOK_DIR), progress_bar=False)
    assert err.value.ename == "ParameterError"
    assert "holds no results" in err.value.evalue and "scripts/study.sh" in err.value.evalue
    assert not (tmp_path / "f").exists()


def test_bad_parameter_fails_first_cell_with_one_line(tmp_path):
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    out = tmp_path / "bad.ipynb"
    with pytest.raises(PapermillExecutionError) as err:
        pm.execute_notebook(str(NOTEBOOK_DIR / "02_distillation.ipynb"), str(out), kernel_name="python3",
                            parameters={"profile": "smoke", "study_dir": str(tmp_path), "d_cof": 0.3},
                            cwd=str(NOTEBOOK_DIR), progress_bar=False)  # as JupyterLab opened in notebooks/
    e = err.value
    assert e.ename == "ParameterError"
    assert "d_cof" in e.evalue and "\n" not in e.evalue
    assert e.traceback == [f"ParameterError: {e.evalue}"]  # one line, no traceback
    nb = nbformat.read(out, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    # parameters, injected parameters, then the check: the first cell that does anything
    assert "parameters" in code[0].metadata.get("tags", []) and "injected-parameters" in code[1].metadata["tags"]
    assert code[2].outputs[-1].output_type == "error"
    assert all(c.execution_count is None for c in code[3:])


@pytest.mark.parametrize("given, message", [
    ({"overrides": {"eval.episodes": "2"}}, "eval.episodes must be int, got str '2'"),
    ({"overrides": {"eval.tasks": "walker-walk,walker-fly"}}, "unknown task 'walker-fly'"),
    ({"overrides": {"eval.episodes": 1.5}}, "eval.episodes must be int, got float 1.5"),
    ({"overrides": {"eval.protocol": "fast"}}, "protocol must be one of clean, paper"),
    ({"overrides": {"teacher.checkpoint": "mt30-2M"}}, "neither an existing checkpoint file nor a bundled or hub name"),
    ({"overrides": {"eval.epsiodes": 2}}, "unknown profile field 'eval.epsiodes'; did you mean 'eval.episodes'"),
    ({"overrides": {"eval.episodes": 0}}, "eval: episodes must be at least 1"),
    ({"overrides": {"train.distill.d_coef": float("nan")}}, "d_coef must be a finite number >= 0"),
    ({"epsiodes": 2}, "unknown parameter 'epsiodes' for 01_teacher"),
    ({"profile": "huge"}, "parameter 'profile' must be one of smoke, mini, mini-takeover, paper"),
    ({"overrides": [("eval.episodes", 2)]}, "parameter 'overrides' must be a dict"),
    ({"member": "d9_s1"}, "01_teacher has no member 'd9_s1'"),
])
def test_parameter_checks(given, message):
    with pytest.raises(ParameterError) as err:
        values = validate("01_teacher", {"profile": "smoke", **given})
        resolve("01_teacher", profiles.SMOKE, values["member"], values["overrides"])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_run_is_the_profile_with_its_member_and_overrides(tmp_path):
    ns = {"profile": "smoke", "study_dir": str(tmp_path), "member": "pca_s1", "get_ipython": print, "os": os,
          "overrides": {"train.distill.d_coef": 1, "train.seed": 3}}
    run = params.setup("02_distillation", ns)
    d = run.profile.train.distill
    assert d.latent == "pca" and d.d_coef == 1.0 and isinstance(d.d_coef, float) and run.profile.train.seed == 3
    assert run.profile.train.steps == profiles.SMOKE.train.steps and run.base == profiles.SMOKE
    assert run.changes() == {"train.distill.d_coef": 1.0, "train.distill.latent": "pca", "train.seed": 3}
    assert "train.seed" in repr(run) and "(override)" in repr(run) and "(member)" in repr(run)
    assert run.out == tmp_path / "02_distillation" / "pca_s1"
    ns["made_by_a_later_cell"] = "x"  # re-running the check cell in JupyterLab
    params.setup("02_distillation", ns)


def test_every_member_resolves_for_every_profile():
    for prof in profiles.PROFILES.values():
        for nb, members in profiles.sweep_members(prof).items():
            for member in members:
                resolve(nb, prof, member, {})  # a member's changes are profile fields with valid values


# ---------------------------------------------------------------------------- stored notebooks
def test_notebooks_stored_clean_and_paired():
    assert sync_notebooks(check=True) == [], "run: python -m tdmpc_lib.study --sync-notebooks"
    for nb_name in ORDER:
        nb = nbformat.read(NOTEBOOK_DIR / f"{nb_name}.ipynb", as_version=4)
        assert nb.metadata["kernelspec"]["name"] == "python3"
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code), nb_name
        assert nb.cells[0].cell_type == "markdown"
        assert code[0].metadata.get("tags") == ["parameters"], nb_name
        names = [line.split("=")[0].strip() for line in code[0].source.splitlines() if "=" in line]
        assert names == list(PARAMETERS), nb_name
        assert f'study.setup("{nb_name}", globals())' in code[1].source


# ---------------------------------------------------------------------------- viewer
def test_viewer_builds_widgets_and_frames(tmp_path):
    import ipywidgets

    from tdmpc_lib import make_world_model, save_checkpoint
    from tdmpc_lib.render import write_video
    from tdmpc_lib.study.viewer import RolloutViewer

    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(make_world_model("tiny", seed=0), ckpt)
    viewer = RolloutViewer({"tiny": str(ckpt)}, task="cartpole-swingup", steps=5, width=64, height=48, fps=10)
    assert isinstance(viewer.widget, ipywidgets.VBox)
    assert viewer.link.source == (viewer.play, "value") and viewer.link.target == (viewer.slider, "value")
    ro = viewer.render()
    assert len(ro.frames) == 6 and ro.frames[0].shape == (48, 64, 3) and ro.frames[0].std() > 0
    assert len(ro.rewards) == 5 and viewer.slider.max == viewer.play.max == 5
    first_frame, first_trace = viewer.frame.value, viewer.trace.value
    viewer.slider.value = 4  # what Play does through the jslink
    assert viewer.frame.value != first_frame and viewer.trace.value != first_trace
    assert viewer.frame.value[:4] == b"\x89PNG"
    for suffix in (".gif", ".mp4"):
        path = write_video(ro, tmp_path / f"ro{suffix}", fps=10)
        assert path.stat().st_size > 0


# ---------------------------------------------------------------------------- profiles and plan
def test_profiles_plan_and_overrides():
    from tdmpc_lib.choices import ProfileName, options

    assert list(profiles.PROFILES) == list(options(ProfileName))  # every profile can be asked for by name
    for prof in profiles.PROFILES.values():
        assert profiles.Profile.from_dict(prof.to_dict()) == prof
    value_policy = profiles.MINI_TAKEOVER.replace(**{  # its README: the 'all' arm without the reward term
        "train.distill.d_coef": 0.0, "sweep.arms": ("all",), "sweep.latent_modes": (), "sweep.d_coefs": (0.0,)})
    recordings = {"mini": profiles.MINI, "mini-amd": profiles.MINI, "mini-takeover-amd": profiles.MINI_TAKEOVER,
                  "mini-takeover-vp-amd": value_policy}
    for recording, prof in recordings.items():  # what the README's numbers ran
        recorded = NOTEBOOK_DIR.parent / "results" / recording / "profile.json"
        assert profiles.Profile.from_dict(json.loads(recorded.read_text())) == prof
    mini = plan(profiles.MINI)
    assert [e.member for e in mini["01_teacher"]] == ["tdmpc-opt-mt30-1M"]
    members = {e.member: e for e in mini["02_distillation"]}
    assert set(members) == ({f"d{d}_s{s}" for d in ("0", "0.45") for s in (1, 2)}
                            | {f"{a}_s{s}" for a in ("value", "policy", "all", "linear-frozen", "linear", "pca")
                               for s in (1, 2)})
    assert members["policy_s2"].overrides == {"train.distill.pi_coef": 1.0, "train.distill.detach_encoder": True,
                                              "train.distill.d_coef": 0.0, "train.seed": 2}
    assert members["pca_s1"].overrides == {"train.distill.latent": "pca", "train.seed": 1}
    assert members["pca_s1"].after == []  # a bundled teacher: students wait only on the dataset's lock
    assert mini["04_quantization"][0].after == [f"02_distillation [d0.45_s{s}]" for s in (1, 2)]
    smoke = plan(profiles.SMOKE)  # a teacher trained here: its students wait for it
    assert {e.member: e.after for e in smoke["02_distillation"]}["all_s1"] == ["01_teacher [train-tiny]"]
    assert {e.member: e.after for e in smoke["02_distillation"]}["d0_s1"] == []
    paper = plan(profiles.PAPER)
    assert "d0.45_s1_1000000st" in {e.member for e in paper["02_distillation"]}
    # a comparison teacher trained here: its students wait for its 01 member, the others do not
    other = plan(profiles.PAPER.replace(**{"teacher.compare": ("train:5",)}))
    after = {e.member: e.after for e in other["02_distillation"]}
    assert after["d0.4_s1_teacher-train-5"] == ["01_teacher [train-5]"] and after["d0.4_s1"] == []
    key, value = profiles.parse_override(profiles.MINI, "sweep.d_coefs=0,0.45")
    assert (key, value) == ("sweep.d_coefs", (0.0, 0.45))
    assert profiles.MINI.replace(**{"viewer.task": "walker-walk"}).viewer.task == "walker-walk"
    with pytest.raises(ValueError, match="unknown profile field"):
        profiles.MINI.replace(stepz=3)
    with pytest.raises(ParameterError):
        profiles.MINI.replace(**{"train.steps": "many"})
    with pytest.raises(ParameterError, match="profile 'mini': eval: unknown task 'walker-fly'"):
        profiles.MINI.replace(**{"eval.tasks": "walker-fly"})  # caught before any notebook runs
    with pytest.raises(ParameterError, match="latent_modes"):
        profiles.MINI.replace(**{"sweep.latent_modes": ("linear", "pcaa")})
    with pytest.raises(ParameterError, match="collected by the teacher"):
        profiles.MINI.replace(**{"teacher.checkpoint": "train:1"})  # the teacher's data cannot come from a teacher trained on it
    with pytest.raises(ParameterError, match="data mixture entry 'prior-0.3'"):
        profiles.MINI.replace(**{"data.mixture": ("random", "prior-0.3")})
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ParameterError, match="must be a finite number >= 0"):
            profiles.MINI.replace(**{"train.distill.d_coef": bad})
        with pytest.raises(ParameterError, match="coefficients are finite numbers >= 0"):
            profiles.MINI.replace(**{"sweep.d_coefs": (0.0, bad)})
    with pytest.raises(ParameterError, match="must not repeat"):
        profiles.MINI.replace(**{"sweep.seeds": (1, 1)})
    with pytest.raises(ParameterError, match="num_elites <= num_samples"):
        profiles.MINI.replace(**{"eval.planner.num_elites": 500})
    assert profiles.parse_mixture_entry("plan+0.25") == ("plan", 0.25)
    assert select("02,viewer") == ["02_distillation", "06_rollout_viewer"]
    with pytest.raises(ValueError, match="matches no notebook"):
        select("07")


def test_killing_the_runner_leaves_no_process_behind(tmp_path):
    """kill -9 of `python -m tdmpc_lib.study`: its pool workers (PR_SET_PDEATHSIG) and their
    kernels (which poll their parent) all exit; the unfinished execution has no result.json and
    is redone by the next run."""
    import signal
    import subprocess
    import sys

    import psutil

    runner = subprocess.Popen([sys.executable, "-m", "tdmpc_lib.study", "--profile", "smoke", "--study-dir",
                               str(tmp_path / "s"), "--workers", "2"], cwd=NOTEBOOK_DIR.parent,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc, family = psutil.Process(runner.pid), set()
    deadline = time.time() + 120
    while time.time() < deadline:  # until a kernel runs under a worker
        family |= {p.pid for p in proc.children(recursive=True)}
        if any("ipykernel" in " ".join(p.cmdline()) for p in proc.children(recursive=True)
               if p.is_running()):
            break
        time.sleep(0.2)
    else:
        runner.kill()
        pytest.fail("no kernel started within 120 s")
    family |= {p.pid for p in proc.children(recursive=True)}
    runner.send_signal(signal.SIGKILL)
    runner.wait()

    def alive():
        out = []
        for pid in family:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    out.append(pid)
            except psutil.NoSuchProcess:
                pass
        return out

    deadline = time.time() + 30
    while alive() and time.time() < deadline:
        time.sleep(0.2)
    left = alive()
    for pid in left:  # do not leak them into the rest of the suite
        psutil.Process(pid).kill()
    assert not left, f"{len(left)} process(es) outlived the runner"
    assert not (tmp_path / "s" / "01_teacher" / "train-tiny" / "result.json").exists()


def test_record_copies_what_the_numbers_rest_on(smoke, tmp_path):
    """--record: the files behind a study's numbers (results/mini is made this way)."""
    from tdmpc_lib.study.results import load_study, record_study

    study_dir, _ = smoke
    written = {p.name for p in record_study(study_dir, tmp_path / "rec")}
    assert {"profile.json", "aggregate.json", "student_runs.json", "teacher_eval.json", "random_floor.json",
            "teacher_diagnostics.json", "quantization.csv", "study_log.jsonl"} <= written
    runs = json.loads((tmp_path / "rec" / "student_runs.json").read_text())
    st = load_study(study_dir)
    assert len(runs) == st.runs[st.runs["default_teacher"].astype(bool)]["run_dir"].nunique()
    some = next(iter(runs.values()))
    assert set(some) >= {"d_coef", "seed", "normalized_score", "returns", "heldout_reward_mse_true"}
    assert json.loads((tmp_path / "rec" / "aggregate.json").read_text()) == \
        json.loads((study_dir / "05_results" / "aggregate.json").read_text())
    with pytest.raises(ValueError, match="not a finished study"):
        record_study(tmp_path / "empty", tmp_path / "rec2")
