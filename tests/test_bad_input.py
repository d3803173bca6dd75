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
    (root / "list_manifest_store").mkdir()
    (root / "list_manifest_store" / "manifest.json").write_text("[]")
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
    from tdmpc_lib.export import main as export_main
    from tdmpc_lib.quantize import main as quantize_main
    from tdmpc_lib.study.__main__ import main as study_main
    from tdmpc_lib.train.__main__ import main as train_main
    return {"evaluate": evaluate_main, "train": train_main, "data": data_main, "quantize": quantize_main,
            "study": study_main, "export": export_main}[tool]


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
    ("train", ["--data", f"{I}/store", "--out", f"{W}/run", "--eval-freq", "1", "--eval.tasks", "walker-fly"],
     "unknown task 'walker-fly'"),
    ("train", ["--data", f"{I}/store", "--out", f"{W}/run", "--batch-size", "0"], "batch_size must be >= 1"),
    ("train", ["--data", f"{I}/edited_store", "--out", f"{W}/run"], "disagrees with its segments"),
    ("train", ["--data", f"{I}/missing_store", "--out", f"{W}/run"], "holds no dataset"),
    ("train", ["--data", f"{I}/store", "--out", ""], "the output folder is empty"),
    ("train", ["--data", f"{I}/store", "--out", f"{W}/run", "--student-size", "1", "--init", f"{I}/tiny.pt"],
     "holds a 'tiny' model but --student-size is 1; pass --student-size tiny"),
    # data
    ("data", ["info", f"{I}/edited_store"], "disagrees with its segments"),
    ("data", ["info", f"{I}/no_obs_dim_store"], "lacks obs_dim"),
    ("data", ["info", f"{I}/list_manifest_store"], "is not a tdmpc-distill"),
    ("data", ["convert", "--chunks", f"{I}/a_folder", "--out", f"{W}/s", "--trust-pickle"],
     "is a folder; give the chunk files in it"),
    ("data", ["convert", "--chunks", f"{I}/r.json", "--out", f"{W}/s", "--trust-pickle", "--episode-length", "0"],
     "episode_length 0 is not a row count"),
    ("data", ["convert", "--chunks", f"{I}/r.json", "--out", f"{W}/s", "--trust-pickle", "--episode-length", "-5"],
     "episode_length -5 is not a row count"),
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
    ("study", ["--list", "--study-dir", f"{W}/s", "--set", "train.lr=abc"], "lr='abc': expected float"),
    ("study", ["--list", "--study-dir", f"{W}/s", "--set", "train.distill.d_coef=nan"], "must be a finite number >= 0"),
    ("study", ["--list", "--study-dir", f"{W}/s", "--set", "sweep.d_coefs=0,inf"], "finite numbers >= 0"),
    ("study", ["--list", "--study-dir", f"{W}/s", "--set", "eval.tasks=walker-fly"], "unknown task 'walker-fly'"),
    ("study", ["--list", "--study-dir", f"{W}/s", "--set", "stepz=3"], "not a settable field; did you mean"),
    ("study", ["--list", "--study-dir", f"{W}/s", "--only", "07"], "matches no notebook"),
    ("study", ["--list", "--study-dir", f"{W}/s", "--set", "teacher.checkpoint=train:1"], "collected by the teacher"),
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
    (lambda i: make_world_model(1.0), ValueError, "unknown model size 1.0"),
    (lambda i: load_checkpoint(None), CheckpointError, "must be a file path or a checkpoint name, got None"),
    (lambda i: __import__("tdmpc_lib.train", fromlist=["train"]).train([str(i / "store")]), TypeError,
     "train() takes a TrainConfig or a dict of its fields, got list"),
    (lambda i: __import__("tdmpc_lib.data", fromlist=["open_store"]).open_store(None), TypeError,
     "open_store: root must be the store folder's path, got NoneType None"),
    (lambda i: __import__("tdmpc_lib.data", fromlist=["convert_chunks"]).convert_chunks(str(i / "c.pt"), i / "s"),
     TypeError, "convert_chunks: paths must be a list of chunk file paths, got str"),
    (lambda i: collect(i / "s", "cartpole-balance", 1.5), TypeError,
     "collect: episodes must be a whole number of episodes per task, got float 1.5"),
    (lambda i: __import__("tdmpc_lib.evaluate", fromlist=["evaluate"]).evaluate(str(i / "tiny.pt"), None),
     TypeError, "evaluate: model must be a WorldModel"),
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


# ---------------------------------------------------------------------------- the full matrix
# Every class of bad input through every way in: the command lines (tyro-generated), the Python
# API (the config dataclasses' validate() and the library functions), a notebook parameter as
# papermill injects it (params.validate and resolve, in-process) and a `--set KEY=VALUE` override (train and
# study). Each row: (class, entry, target, input, expected message). CLI and --set rows exit 2
# with one line and leave the watched folder and the inputs as they were; API rows raise
# ValueError (or its subclass) with one line; papermill rows raise ParameterError with one line.
def _api(name):
    """API calls of the matrix, by name (lambdas of the inputs folder and the watched folder)."""
    from tdmpc_lib.evaluate import EvalConfig
    from tdmpc_lib.export import export_state_dict
    from tdmpc_lib.planner import PlannerConfig
    from tdmpc_lib.quantize import save_quantized
    from tdmpc_lib.train import train
    from tdmpc_lib.train.config import DistillConfig, TrainConfig

    tiny = lambda i: make_world_model("tiny", seed=0)  # noqa: E731
    return {
        "TrainConfig.from_dict": lambda i, w: TrainConfig.from_dict({"data": str(i / "store"), "steps": "ten"}),
        "train(steps=2.5)": lambda i, w: train(data=str(i / "store"), out=str(w / "run"), steps=2.5),
        "EvalConfig(episodes=1.5)": lambda i, w: EvalConfig(episodes=1.5).validate(),
        "EvalConfig(protocol)": lambda i, w: EvalConfig(protocol="fast").validate(),
        "EvalConfig(episodes=0)": lambda i, w: EvalConfig(episodes=0).validate(),
        "EvalConfig(tasks dup)": lambda i, w: EvalConfig(tasks="cartpole-balance,cartpole-balance").validate(),
        "PlannerConfig(num_elites)": lambda i, w: PlannerConfig(num_elites=600).validate(),
        "PlannerConfig(temperature)": lambda i, w: PlannerConfig(temperature=float("nan")).validate(),
        "DistillConfig(d_coef=inf)": lambda i, w: DistillConfig(teacher="x.pt", d_coef=float("inf")).validate(),
        "DistillConfig(latent)": lambda i, w: DistillConfig(teacher="x.pt", latent="pcaa").validate(),
        "TrainConfig(precision)": lambda i, w: TrainConfig(data="d", precision="fp16").validate(),
        "TrainConfig(lr=nan)": lambda i, w: TrainConfig(data="d", lr=float("nan")).validate(),
        "TrainConfig(eval tasks dup)": lambda i, w: TrainConfig(
            data="d", eval_final=True, eval=EvalConfig(tasks="cartpole-balance,cartpole-balance")).validate(),
        "TrainConfig(out is a file)": lambda i, w: TrainConfig(data="d", out=str(i / "r.json")).validate(),
        "collect(episodes=0)": lambda i, w: collect(w / "c", "cartpole-balance", 0, "random", progress=False),
        "collect(tasks dup)": lambda i, w: collect(w / "c", "cartpole-balance,cartpole-balance", 1, "random",
                                                   progress=False),
        "collect(policy)": lambda i, w: collect(w / "c", "cartpole-balance", 1, "greedy", progress=False),
        "save_quantized(int4)": lambda i, w: save_quantized(tiny(i), w / "q.pt", "int4"),
        "save_quantized(folder)": lambda i, w: save_quantized(tiny(i), w, "fp16"),
        "export_state_dict(layout)": lambda i, w: export_state_dict(tiny(i), layout="v3"),
    }[name]


S = ["--list", "--study-dir", f"{W}/s"]  # the study's command line, planning only
TRAIN = ["--data", f"{I}/store", "--out", f"{W}/run"]
EVAL = ["--checkpoint", f"{I}/tiny.pt"]
COLLECT = ["collect", "--policy", "random", "--out", f"{W}/c"]
QUANT = ["--checkpoint", f"{I}/tiny.pt", "--format", "fp16"]
MATRIX = [
    # ------------------------------------------------------------------ wrong type
    ("type", "cli", "train", TRAIN + ["--steps", "ten"], "--steps"),
    ("type", "cli", "train", TRAIN + ["--d-coef", "big"], "expected float"),
    ("type", "cli", "evaluate", EVAL + ["--episodes", "2.5"], "--episodes"),
    ("type", "cli", "data", COLLECT + ["--tasks", "cartpole-balance", "--episodes", "one"], "expected int"),
    ("type", "cli", "quantize", QUANT + ["--output", f"{W}/q.pt", "--batch", "x"], "--batch"),
    ("type", "set", "train", TRAIN + ["--set", "steps=ten"], "steps='ten': expected int"),
    ("type", "set", "train", TRAIN + ["--set", "distill.all_steps=maybe"], "all_steps='maybe': expected bool"),
    ("type", "set", "study", S + ["--set", "train.steps=ten"], "'ten': expected int"),
    ("type", "set", "study", S + ["--set", "train.batch_size=2.5"], "'2.5': expected int"),
    ("type", "papermill", "02_distillation", {"overrides": {"train.steps": "10"}}, "train.steps must be int, got str"),
    ("type", "papermill", "01_teacher", {"overrides": {"teacher.episodes": 1.5}}, "teacher.episodes must be int"),
    ("type", "papermill", "01_teacher", {"member": 2}, "parameter 'member' must be a string or None, got 2"),
    ("type", "api", "TrainConfig.from_dict", None, "TrainConfig.steps must be int, got str 'ten'"),
    ("type", "api", "train(steps=2.5)", None, "TrainConfig.steps must be int, got float 2.5"),
    ("type", "api", "EvalConfig(episodes=1.5)", None, "episodes must be a whole number"),
    # ------------------------------------------------------------------ out of range
    ("range", "cli", "train", TRAIN + ["--horizon", "0"], "horizon must be >= 1"),
    ("range", "cli", "evaluate", EVAL + ["--planner.num-elites", "600"], "num_elites <= num_samples"),
    ("range", "cli", "data", COLLECT + ["--tasks", "cartpole-balance", "--episodes", "0"],
     "episodes must be at least 1"),
    ("range", "cli", "quantize", QUANT + ["--output", f"{W}/q.pt", "--batch", "-3"], "batch must be at least 1"),
    ("range", "set", "train", TRAIN + ["--set", "eval.planner.num_samples=0"], "num_samples must be a whole number >= 1"),
    ("range", "set", "study", S + ["--set", "eval.episodes=0"], "must be at least 1, got 0"),
    ("range", "set", "study", S + ["--set", "eval.planner.num_elites=500"], "num_elites <= num_samples"),
    ("range", "papermill", "01_teacher", {"overrides": {"teacher.episodes": 0}}, "teacher.episodes must be at least 1"),
    ("range", "papermill", "02_distillation", {"overrides": {"train.batch_size": -4}}, "batch_size must be >= 1, got -4"),
    ("range", "api", "EvalConfig(episodes=0)", None, "episodes must be at least 1, got 0"),
    ("range", "api", "PlannerConfig(num_elites)", None, "num_elites <= num_samples"),
    ("range", "api", "collect(episodes=0)", None, "episodes must be at least 1, got 0"),
    # ------------------------------------------------------------------ non-finite
    ("finite", "cli", "train", TRAIN + ["--lr", "inf"], "lr must be a finite number >= 0, got inf"),
    ("finite", "cli", "train", TRAIN + ["--teacher", f"{I}/tiny.pt", "--cache-tolerance", "nan"],
     "cache_tolerance must be a finite number >= 0, got nan"),
    ("finite", "cli", "evaluate", EVAL + ["--planner.temperature", "nan"], "temperature must be a finite number"),
    ("finite", "set", "train", TRAIN + ["--teacher", f"{I}/tiny.pt", "--set", "distill.d_coef=nan"],
     "d_coef must be a finite number >= 0, got nan"),
    ("finite", "set", "study", S + ["--set", "train.distill.latent_coef=inf"], "must be a finite number >= 0"),
    ("finite", "set", "study", S + ["--set", "sweep.d_coefs=0,nan"], "finite numbers >= 0"),
    ("finite", "papermill", "02_distillation", {"overrides": {"train.distill.d_coef": float("inf")}},
     "must be a finite number >= 0"),
    ("finite", "papermill", "02_distillation", {"member": "pca_s1", "overrides": {"train.distill.latent_coef": float("nan")}},
     "must be a finite number >= 0"),
    ("finite", "api", "DistillConfig(d_coef=inf)", None, "d_coef must be a finite number >= 0, got inf"),
    ("finite", "api", "TrainConfig(lr=nan)", None, "lr must be a finite number >= 0, got nan"),
    ("finite", "api", "PlannerConfig(temperature)", None, "temperature must be a finite number > 0, got nan"),
    # ------------------------------------------------------------------ duplicate tasks (and seeds)
    ("duplicate", "cli", "train", TRAIN + ["--eval-final", "--eval.tasks", "reacher-easy,reacher-easy"],
     "reacher-easy given more than once"),
    ("duplicate", "cli", "evaluate", EVAL + ["--tasks", "reacher-easy,cartpole-balance,reacher-easy"],
     "reacher-easy given more than once"),
    ("duplicate", "cli", "data", COLLECT + ["--tasks", "cartpole-balance,cartpole-balance", "--episodes", "1"],
     "cartpole-balance given more than once"),
    ("duplicate", "set", "study", S + ["--set", "eval.tasks=cartpole-balance,cartpole-balance"],
     "cartpole-balance given more than once"),
    ("duplicate", "set", "study", S + ["--set", "sweep.seeds=1,1"], "must not repeat"),
    ("duplicate", "papermill", "04_quantization", {"overrides": {"eval.tasks": "reacher-easy,reacher-easy"}},
     "given more than once"),
    ("duplicate", "api", "EvalConfig(tasks dup)", None, "cartpole-balance given more than once"),
    ("duplicate", "api", "TrainConfig(eval tasks dup)", None, "cartpole-balance given more than once"),
    ("duplicate", "api", "collect(tasks dup)", None, "cartpole-balance given more than once"),
    # ------------------------------------------------------------------ unknown choice
    ("choice", "cli", "train", TRAIN + ["--precision", "fp16"], "--precision 'fp16' is not a choice; use one of fp32, bf16"),
    ("choice", "cli", "train", TRAIN + ["--student-size", "2"], "use one of tiny, 1, 5, 19, 48, 317"),
    ("choice", "cli", "evaluate", EVAL + ["--protocol", "fast"], "use one of clean, paper"),
    ("choice", "cli", "data", ["collect", "--policy", "greedy", "--tasks", "cartpole-balance", "--episodes", "1",
                               "--out", f"{W}/c"], "use one of plan, prior, random"),
    ("choice", "cli", "export", ["--checkpoint", f"{I}/tiny.pt", "--output", f"{W}/e.pt", "--dtype", "int8"],
     "use one of fp32, fp16"),
    ("choice", "cli", "study", ["--list", "--profile", "huge"], "use one of smoke, mini, mini-takeover, paper"),
    ("choice", "set", "train", TRAIN + ["--set", "distill.schedule=cosine"],
     "schedule must be one of constant, decrease, increase, got 'cosine'"),
    ("choice", "set", "study", S + ["--set", "eval.protocol=fast"], "must be one of clean, paper"),
    ("choice", "set", "study", S + ["--set", "quant.formats=fp16,int4"], "int4"),
    ("choice", "papermill", "01_teacher", {"overrides": {"eval.policy": "greedy"}}, "policy must be one of plan, prior"),
    ("choice", "papermill", "02_distillation", {"overrides": {"train.distill.latent": "pcaa"}},
     "must be one of none, linear, linear-frozen, pca"),
    ("choice", "papermill", "02_distillation", {"member": "pca_s9"}, "02_distillation has no member 'pca_s9'"),
    ("choice", "api", "EvalConfig(protocol)", None, "protocol must be one of clean, paper, got 'fast'"),
    ("choice", "api", "DistillConfig(latent)", None, "latent must be one of none, linear, linear-frozen, pca"),
    ("choice", "api", "TrainConfig(precision)", None, "precision must be one of fp32, bf16, got 'fp16'"),
    ("choice", "api", "collect(policy)", None, "policy must be one of plan, prior, random, got 'greedy'"),
    ("choice", "api", "save_quantized(int4)", None, "unknown quantization format 'int4'"),
    ("choice", "api", "export_state_dict(layout)", None, "unknown layout 'v3'"),
    # ------------------------------------------------------------------ bad path / output location
    ("path", "cli", "train", ["--data", f"{I}/store", "--out", f"{I}/r.json"], "is a file; choose a folder path"),
    ("path", "cli", "train", ["--data", f"{I}/store", "--out", f"{I}/r.json/run"], "which is a file, not a folder"),
    ("path", "cli", "evaluate", EVAL + ["--output", f"{I}/a_folder"], "is a folder"),
    ("path", "cli", "data", ["collect", "--policy", "random", "--tasks", "cartpole-balance", "--episodes", "1",
                             "--out", f"{I}/r.json"], "is a file; choose a folder path"),
    ("path", "cli", "export", ["--checkpoint", f"{I}/tiny.pt", "--output", f"{I}/tiny.pt/x.pt"], "which is a file"),
    ("path", "cli", "export", ["--checkpoint", f"{I}/missing.pt", "--output", f"{W}/e.pt"], "does not exist"),
    ("path", "cli", "quantize", QUANT + ["--output", f"{I}/tiny.pt"], "is the input checkpoint"),
    ("path", "set", "study", S + ["--set", "teacher.checkpoint=/nonexistent/teacher.pt"], "neither an existing checkpoint"),
    ("path", "papermill", "04_quantization", {"overrides": {"quant.checkpoint": "/nonexistent/m.pt"}},
     "neither an existing checkpoint"),
    ("path", "api", "TrainConfig(out is a file)", None, "is a file; choose a folder path"),
    ("path", "api", "save_quantized(folder)", None, "is a folder"),
]


@pytest.mark.parametrize("kind, entry, target, given, message", MATRIX,
                         ids=[f"{r[0]}-{r[1]}-{r[2]}-{i}" for i, r in enumerate(MATRIX)])
def test_bad_input_matrix(kind, entry, target, given, message, inputs, tmp_path):
    from tdmpc_lib.study.params import ParameterError, resolve, validate
    from tdmpc_lib.study.profiles import SMOKE

    work = tmp_path / "work"
    work.mkdir()
    before, inputs_before = _snapshot(work), _snapshot(inputs)
    if entry in ("cli", "set"):
        args = [a.replace(I, str(inputs)).replace(W, str(work)) for a in given]
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = _cli(target)(args)
            except SystemExit as e:
                code = e.code
        text = err.getvalue().strip()
        assert code == 2, (code, text)
        assert text.startswith("error: ") and "\n" not in text and "Traceback" not in text, text
    elif entry == "papermill":
        with pytest.raises(ParameterError) as e:  # what setup() checks, without making the output folder
            values = validate(target, {"profile": "smoke", "study_dir": str(work / "s"), **given})
            resolve(target, SMOKE, values["member"], values["overrides"])
        text = str(e.value)
    else:
        with pytest.raises(ValueError) as e:
            _api(target)(inputs, work)
        text = str(e.value)
    assert message in text and "\n" not in text, text
    assert _snapshot(work) == before and _snapshot(inputs) == inputs_before  # nothing written or changed
