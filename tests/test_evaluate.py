import json

import pytest

from tdmpc_lib import load_checkpoint, make_world_model, save_checkpoint
from tdmpc_lib.evaluate import EvalConfig, evaluate, main, normalized_score
from tdmpc_lib.planner import PlannerConfig


def test_cli_writes_results_json_with_every_field(tmp_path, capsys):
    save_checkpoint(make_world_model("tiny", seed=0), tmp_path / "tiny.pt")
    out = tmp_path / "r.json"
    main(["--checkpoint", str(tmp_path / "tiny.pt"), "--tasks", "pendulum-swingup,cup-spin", "--episodes", "2",
          "--seed", "3", "--protocol", "paper", "--policy", "prior", "--output", str(out)])
    r = json.loads(out.read_text())
    assert set(r["tasks"]) == {"pendulum-swingup", "cup-spin"}
    for v in r["tasks"].values():
        assert len(v["returns"]) == 2 and v["mean"] == pytest.approx(sum(v["returns"]) / 2, abs=1e-3)
        # the return over each tenth of the episode, summing to the episode's return
        assert [len(s) for s in v["segment_returns"]] == [10, 10]
        assert [sum(s) for s in v["segment_returns"]] == pytest.approx(v["returns"], abs=1e-2)
    assert r["normalized_score"] == pytest.approx(normalized_score({t: v["mean"] for t, v in r["tasks"].items()}))
    assert r["protocol"] == "paper" and r["seed"] == 3 and r["precision"] == "fp32" and r["device"] == "cpu"
    assert len(r["checkpoint"]["sha256"]) == 64 and r["timing"]["agent_steps"] == 4 * 500
    assert "normalized score" in capsys.readouterr().out


def test_same_seed_same_returns_and_episodes_differ(tmp_path):
    m = make_world_model("tiny", seed=0)
    cfg = EvalConfig(tasks="cartpole-swingup", episodes=2, seed=5, policy="prior")
    a, b = evaluate(m, cfg, progress=False), evaluate(m, cfg, progress=False)
    assert a["tasks"] == b["tasks"]
    r = a["tasks"]["cartpole-swingup"]["returns"]
    assert r[0] != r[1]  # episode k starts from the official k-th initial state


def test_bad_arguments_fail_with_one_line(tmp_path, capsys):
    save_checkpoint(make_world_model("tiny"), tmp_path / "t.pt")
    for args, text in ((["--tasks", "walker-fly"], "unknown task 'walker-fly'"),
                       (["--episodes", "0"], "episodes must be at least 1"),
                       (["--device", "cuda"], "no CUDA GPU is available"),
                       (["--tasks", "cartpole-balance,cartpole-balance"], "cartpole-balance given more than once"),
                       (["--max-batch-envs", "-1"], "max_batch_envs must be >= 0"),
                       (["--output", str(tmp_path)], f"output {tmp_path} is a folder"),
                       (["--output", str(tmp_path / "t.pt" / "r.json")], "which is a file, not a folder")):
        with pytest.raises(SystemExit) as e:
            main(["--checkpoint", str(tmp_path / "t.pt"), *args])
        assert e.value.code == 2
        assert text in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--checkpoint", str(tmp_path / "missing.pt")])
    assert "does not exist" in capsys.readouterr().err


def test_fixture_checkpoint_is_competent_with_planning(fp16_fixture):
    """The released 1M student plans well under the clean protocol, with its environments
    planned in two threads (PlannerConfig.threads: what a user runs on a 2-core CPU)."""
    model = load_checkpoint(fp16_fixture)
    cfg = EvalConfig(tasks="reacher-easy,cartpole-balance", episodes=1, seed=1, planner=PlannerConfig(threads=2))
    r = evaluate(model, cfg, progress=False)
    assert r["tasks"]["reacher-easy"]["mean"] > 900, r["tasks"]
    assert r["tasks"]["cartpole-balance"]["mean"] > 900, r["tasks"]


def test_sigkill_then_resume_gives_the_uninterrupted_json(tmp_path):
    """Finished batches are journaled beside --output; a killed evaluation continued with
    --resume ends with the same results as one that was never interrupted."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    save_checkpoint(make_world_model("tiny", seed=0), tmp_path / "tiny.pt")

    def cli(out, *extra):
        return [sys.executable, "-m", "tdmpc_lib.evaluate", "--checkpoint", str(tmp_path / "tiny.pt"), "--tasks",
                "cartpole-balance,reacher-easy,pendulum-swingup", "--episodes", "2", "--policy", "prior",
                "--protocol", "paper", "--max-batch-envs", "2", "--output", str(out), *extra]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = tmp_path / "killed.json"
    journal = Path(f"{killed}.partial.jsonl")
    proc = subprocess.Popen(cli(killed), cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (journal.is_file() and len(journal.read_text().splitlines()) >= 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    lines = journal.read_text().splitlines()
    assert 2 <= len(lines) <= 3 and not killed.exists()  # some batches done, not all
    again = subprocess.run(cli(killed), cwd=tmp_path, env=env, capture_output=True, text=True)
    assert again.returncode == 2 and "pass --resume" in again.stderr
    assert subprocess.run(cli(killed, "--resume"), cwd=tmp_path, env=env, capture_output=True).returncode == 0
    assert not journal.exists()
    whole = tmp_path / "whole.json"
    assert subprocess.run(cli(whole), cwd=tmp_path, env=env, capture_output=True).returncode == 0
    a, b = json.loads(killed.read_text()), json.loads(whole.read_text())
    assert a["timing"]["agent_steps"] < b["timing"]["agent_steps"]  # journaled batches were not run again
    for r in (a, b):
        r.pop("timing")
        r["checkpoint"].pop("path")
    assert a == b
