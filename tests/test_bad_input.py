"""The bad-input matrix: every entry point (the CLIs of evaluate, train, data, quantize and the
study, and the Python API) given each class of bad input answers with exit code 2 (or one
exception type from the API) and a one-line message that names the input and the fix, and
leaves the folder it was pointed at exactly as it was: nothing written, changed or left behind."""
import contextlib
import io
import json
import shutil

import pytest
import torch

from tdmpc_lib import load_checkpoint, make_world_model, save_checkpoint
from tdmpc_lib.checkpoint import CheckpointError
from tdmpc_lib.data import collect

NO_CUDA = not torch.cuda.is_available()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Good inputs to spoil, outside the watched folder."""
    root = tmp_path_factory.mktemp("inputs")
    save_checkpoint(make_world_model("tiny", seed=0), root / "tiny.pt")
    collect(root / "store", "cartpole-balance", 2, "random", seed=1, max_steps=8, progress=False)
    (root / "fig.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    (root / "r.json").write_text('{"score": 1}')
    (root / "noise.pt").write_bytes(bytes(range(7, 200)))
    (root / "a_folder").mkdir()
    edited = root / "edited_store"
    shutil.copytree(root / "store", edited)
    manifest = json.loads((edited / "manifest.json").read_text())
    manifest["num_rows"] += 3
    (edited / "manifest.json").write_text(json.dumps(manifest))
    no_obs_dim = root / "no_obs_dim_store"
    shutil.copytree(root / "store", no_obs_dim)
    manifest = json.loads((no_obs_dim / "manifest.json").read_text())
    manifest.pop("obs_dim")
    (no_obs_dim / "manifest.json").write_text(json.dumps(manifest))
    return root


def _snapshot(folder):
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.rglob("*")}


def _cli(tool: str):
    from tdmpc_lib.data.__main__ import main as data_main
    from tdmpc_lib.evaluate import main as evaluate_main
    from tdmpc_lib.quantize import main as quantize_main
    from tdmpc_lib.study.__main__ import main as study_main
    from tdmpc_lib.train.__main__ import main as train_main
    return {"evaluate": evaluate_main, "train": train_main, "data": data_main, "quantize": quantize_main,
            "study": study_main}[tool]


I, W = "{inputs}", "{work}"  # placeholders: the inputs folder, the watched (output) folder
CASES = [
    # evaluate
    ("evaluate", ["--checkpoint", f"{I}/tiny.pt", "--tasks", "walker-fly"], "unknown task 'walker-fly'"),
    ("evaluate", ["--checkpoint", f"{I}/tiny.pt", "--tasks", "cartpole-balance,cartpole-balance"],
     "cartpole-balance given more than once"),
    ("evaluate", ["--checkpoint", f"{I}/tiny.pt", "--episodes", "0"], "episodes must be at least 1"),
    ("evaluate", ["--checkpoint", f"{I}/tiny.pt", "--max-batch-envs", "-1"], "max_batch_envs must be >= 0"),
    ("evaluate", ["--checkpoint", f"{I}/tiny.pt", "--device", "tpu9"], "'tpu9' is not a device"),
    ("evaluate", ["--checkpoint", f"{I}/tiny.pt", "--output", W], "is a folder"),
    ("evaluate", ["--checkpoint", f"{I}/tiny.pt", "--output", f"{I}/tiny.pt/r.json"], "which is a file"),
    ("evaluate", ["--checkpoint", f"{I}/a_folder"], "is a folder, not a file"),
    ("evaluate", ["--checkpoint", f"{I}/fig.png"], "is not a PyTorch checkpoint"),
    ("evaluate", ["--checkpoint", f"{I}/r.json"], "is not a PyTorch checkpoint"),
    ("evaluate", ["--checkpoint", f"{I}/noise.pt"], "is not a PyTorch checkpoint"),
    ("evaluate", ["--checkpoint", f"{I}/missing.pt"], "does not exist"),
    ("evaluate", ["--checkpoint", f"{I}/tiny.pt", "--resume"], "--resume needs --output"),
    # train
    ("train", ["--data", f"{I}/store", "--out", f"{W}/run", "--device", "tpu9"], "'tpu9' is not a device"),
    ("train", ["--data", f"{I}/store", "--out", f"{W}/run", "--threads", "-1"], "threads must be >= 0"),
    ("train", ["--data", f"{I}/store", "--out", f"{W}/run", "--set", "lr=abc"], "lr='abc': expected float"),
    ("train", ["--data", f"{I}/store", "--out", f"{W}/run", "--teacher", f"{I}/tiny.pt", "--d-coef", "nan"],
     "d_coef must be a finite number >= 0, got nan"),
    ("train", ["--data", f"{I}/store", "--out", f"{W}/run", "--teacher", f"{I}/tiny.pt", "--d-coef", "inf"],
     "d_coef must be a finite number >= 0, got inf"),
    ("train", ["--data", f"{I}/store", "--out", f"{W}/run", "--teacher", f"{I}/tiny.pt", "--latent", "linear",
               "--latent-coef", "nan"], "latent_coef must be a finite number >= 0, got nan"),
    ("train", ["--data", f"{I}/store", "--out", f"{W}/run", "--eval-freq", "1", "--eval-tasks", "walker-fly"],
     "unknown task 'walker-fly'"),
    ("train", ["--data", f"{I}/store", "--out", f"{W}/run", "--batch-size", "0"], "batch_size must be >= 1"),
    ("train", ["--data", f"{I}/edited_store", "--out", f"{W}/run"], "disagrees with its segments"),
    ("train", ["--data", f"{I}/missing_store", "--out", f"{W}/run"], "holds no dataset"),
    # data
    ("data", ["info", f"{I}/edited_store"], "disagrees with its segments"),
    ("data", ["info", f"{I}/no_obs_dim_store"], "lacks obs_dim"),
    ("data", ["collect", "--policy", "random", "--tasks", "walker-fly", "--episodes", "1", "--out", f"{W}/c"],
     "walker-fly"),
    ("data", ["collect", "--policy", "random", "--tasks", "cartpole-balance", "--episodes", "0", "--out",
              f"{W}/c"], "episodes must be at least 1"),
    ("data", ["collect", "--policy", "prior", "--tasks", "cartpole-balance", "--episodes", "1", "--out", f"{W}/c"],
     "needs a checkpoint"),
    # quantize
    ("quantize", ["--checkpoint", f"{I}/tiny.pt", "--format", "int4", "--output", f"{W}/q.pt"], "'int4'"),
    ("quantize", ["--checkpoint", f"{I}/tiny.pt", "--format", "fp16", "--output", f"{W}/q.pt", "--batch", "0"],
     "batch must be at least 1, got 0"),
    ("quantize", ["--checkpoint", f"{I}/fig.png", "--format", "fp16", "--output", f"{W}/q.pt"],
     "is not a PyTorch checkpoint"),
    ("quantize", ["--checkpoint", f"{I}/tiny.pt", "--format", "fp16", "--output", W], "is a folder"),
    # the study
    ("study", ["--list", "--study-dir", f"{W}/s", "--set", "lr=abc"], "lr='abc': expected float"),
    ("study", ["--list", "--study-dir", f"{W}/s", "--set", "d_coef=nan"], "must be a finite number >= 0"),
    ("study", ["--list", "--study-dir", f"{W}/s", "--set", "d_coefs=0,inf"], "finite numbers >= 0"),
    ("study", ["--list", "--study-dir", f"{W}/s", "--set", "tasks=walker-fly"], "unknown task 'walker-fly'"),
    ("study", ["--list", "--study-dir", f"{W}/s", "--set", "stepz=3"], "expected KEY=VALUE with KEY one of"),
    ("study", ["--list", "--study-dir", f"{W}/s", "--only", "07"], "matches no notebook"),
    ("study", ["--list", "--study-dir", f"{W}/s", "--set", "teacher=train:1"], "collected by the teacher"),
]
if NO_CUDA:
    CASES.append(("evaluate", ["--checkpoint", f"{I}/tiny.pt", "--device", "cuda"], "no CUDA GPU is available"))


@pytest.mark.parametrize("tool, args, message", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_cli_bad_input(tool, args, message, inputs, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    args = [a.replace(I, str(inputs)).replace(W, str(work)) for a in args]
    before, inputs_before = _snapshot(work), _snapshot(inputs)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = _cli(tool)(args)
        except SystemExit as e:
            code = e.code
    text = err.getvalue().strip()
    assert code == 2, (code, text)
    assert message in text, text
    assert "\n" not in text and "Traceback" not in text, text  # one line, no traceback
    assert _snapshot(work) == before and _snapshot(inputs) == inputs_before  # nothing written or changed


@pytest.mark.parametrize("call, exc, message", [
    (lambda i: load_checkpoint(i / "tiny.pt", device="tpu9"), CheckpointError, "'tpu9' is not a device"),
    (lambda i: load_checkpoint(i / "tiny.pt", dtype="fp8"), CheckpointError, "dtype 'fp8' is not supported"),
    (lambda i: load_checkpoint(i / "a_folder"), CheckpointError, "is a folder, not a file"),
    (lambda i: make_world_model(True), ValueError, "unknown model size True"),
    (lambda i: __import__("tdmpc_lib.train", fromlist=["train"]).train(data=str(i / "store"), steps="10"),
     ValueError, "TrainConfig.steps must be int, got str '10'"),
    (lambda i: __import__("tdmpc_lib.train", fromlist=["train"]).train(data=str(i / "store"), batch_size=2.5),
     ValueError, "TrainConfig.batch_size must be int, got float 2.5"),
] + ([(lambda i: load_checkpoint(i / "tiny.pt", device="cuda"), CheckpointError, "no CUDA GPU is available")]
     if NO_CUDA else []))
def test_api_bad_input(call, exc, message, inputs):
    with pytest.raises(exc) as e:
        call(inputs)
    assert message in str(e.value) and "\n" not in str(e.value)
