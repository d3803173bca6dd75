"""scripts/gpu_check.sh in its CPU mode: it runs end to end and its last line is the JSON the
README documents, with device parity, an MPPI evaluation of the bundled teacher and update times."""
import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_quick_mode_prints_its_json():
    done = subprocess.run(["bash", "scripts/gpu_check.sh", "--quick"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["quick"] is True and out["device"] in ("cpu", "cuda")
    assert set(out["parity_max_abs"]) == {"encoder", "dynamics", "reward", "Q", "pi"}
    assert max(out["parity_max_abs"].values()) < 1e-4
    assert out["mt30"]["tasks"] == 2 and out["mt30"]["normalized_score"] > 30  # the teacher still plans
    assert out["update_ms"]["student_1M"] > 0
