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
