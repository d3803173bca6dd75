import os
from pathlib import Path

import pytest

os.environ.setdefault("MUJOCO_GL", "osmesa")  # before dm_control is imported anywhere

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
FP16_FIXTURE = FIXTURES / "tdmpc-opt_mt30_1M_dist045_fp16.pt"
NEW_LAYOUT_FIXTURE = FIXTURES / "tdmpc-opt_mt30_1M_official-new-layout.pt"


@pytest.fixture
def fp16_fixture():
    if not FP16_FIXTURE.is_file():
        pytest.skip("../shared/fixtures is absent (a user's clone has no shared folder)")
    return FP16_FIXTURE


@pytest.fixture
def new_layout_fixture():
    if not NEW_LAYOUT_FIXTURE.is_file():
        pytest.skip("../shared/fixtures is absent (a user's clone has no shared folder)")
    return NEW_LAYOUT_FIXTURE


@pytest.fixture(scope="session")
def smoke_study(tmp_path_factory):
    """The whole smoke study, executed once per test session (2 workers): (study_dir, report).
    tests/test_study.py checks it; tests/test_browser.py opens its notebooks in JupyterLab (the
    study takes about a minute, so both share one)."""
    import time

    pytest.importorskip("papermill")
    from tdmpc_lib.study import profiles
    from tdmpc_lib.study.execution import use_this_interpreter_kernel
    from tdmpc_lib.study.runner import run_study

    use_this_interpreter_kernel()
    study_dir = tmp_path_factory.mktemp("study") / "smoke"
    tic = time.perf_counter()
    report = run_study(profiles.SMOKE, study_dir, workers=2, log=lambda msg: None)
    report["wall_s"] = time.perf_counter() - tic
    return study_dir, report
