"""Post-training quantization (fp16 / bf16 / int8), running in precision, the int8 CPU matmul
path, export to the official NEW layout and the TD-MPC-Opt release formats."""
import os
from pathlib import Path

import pytest
import torch

from tdmpc_lib import quantize as Q
from tdmpc_lib.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from tdmpc_lib.export import export_official, official_state_dict, paper_state_dict, write_paper_checkpoint
from tdmpc_lib.planner import BatchedPlanner, PlannerConfig
from tdmpc_lib.world_model import make_world_model

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
FP16_FIXTURE = FIXTURES / "tdmpc-opt_mt30_1M_dist045_fp16.pt"
NEW_LAYOUT_FIXTURE = FIXTURES / "tdmpc-opt_mt30_1M_official-new-layout.pt"
SMALL_PLANNER = PlannerConfig(num_samples=32, num_elites=8, num_pi_trajs=4, iterations=2)

# Max |x - x_fp32| relative to max(1, max |x_fp32|) per head, on the fixed batch (stored formats).
TOLERANCE = {"fp16": 2e-3, "bf16": 2e-2, "int8": 4e-2}


def _need(path: Path) -> Path:
    if not path.is_file():
        pytest.skip("../shared/fixtures is absent (a user's clone has no shared folder)")
    return path


@pytest.fixture(scope="module")
def tiny():
    """A tiny MT30 model with every tensor perturbed, so reward and Q heads are not zero."""
    model = make_world_model("tiny", seed=0)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model.eval()


@pytest.fixture(scope="module")
def batch(tiny):
    return Q.fixed_batch(tiny, 64, seed=0)


def _relative_errors(ref, model, batch, dtype=None):
    ref_out = Q.head_outputs(ref, batch)
    errs = Q.output_errors(ref, model, batch, dtype)
    return {h: errs[h]["max"] / max(1.0, float(ref_out[h].abs().max())) for h in errs}


# ------------------------------------------------------------------------------------ round trips
@pytest.mark.parametrize("fmt", Q.FORMATS)
def test_quantize_save_load_outputs_within_tolerance(tiny, batch, tmp_path, fmt):
    path = tmp_path / f"{fmt}.pt"
    Q.save_quantized(tiny, path, fmt)
    raw = torch.load(path, weights_only=True)
    assert raw["quantization"]["format"] == fmt
    stored = {v.dtype for v in raw["model"].values()}
    expected = {"fp16": {torch.float16}, "bf16": {torch.bfloat16}, "int8": {torch.int8, torch.float32}}[fmt]
    assert stored == expected
    loaded = load_checkpoint(path)
    assert loaded.checkpoint_info["quantization"]["format"] == fmt
    assert all(v.dtype == torch.float32 for v in loaded.state_dict().values())
    rel = _relative_errors(tiny, loaded, batch)
    assert max(rel.values()) <= TOLERANCE[fmt], rel
    assert max(rel.values()) > 0  # it really was quantized


def test_fp16_and_bf16_round_trip_is_exact_cast(tiny, tmp_path):
    for fmt, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
        Q.save_quantized(tiny, tmp_path / "m.pt", fmt)
        loaded = load_checkpoint(tmp_path / "m.pt").state_dict()
        for k, v in tiny.state_dict().items():
            assert torch.equal(loaded[k], v.to(dtype).float()), k


# ------------------------------------------------------------------------------------ int8 details
def test_int8_scales_are_per_output_channel(tiny):
    obj = Q.quantized_checkpoint(tiny, "int8")
    assert obj["quantization"]["scheme"] == "symmetric-per-channel"
    state, scales, fp32 = obj["model"], obj["int8_scales"], tiny.state_dict()
    weights = [k for k, v in fp32.items() if Q.is_linear_weight(k, v)]
    assert sorted(scales) == sorted(weights) == obj["quantization"]["quantized_keys"]
    assert "_Qs.params.0.weight" in scales and "_target_Qs.params.2.weight" in scales
    for k, w in fp32.items():
        if k not in scales:  # LayerNorm, biases, task embedding, action masks: fp32
            assert state[k].dtype == torch.float32 and torch.equal(state[k], w), k
            continue
        q, s = state[k], scales[k]
        assert q.dtype == torch.int8 and s.dtype == torch.float32
        assert s.shape == w.shape[:-1]  # (out,) or (N_q, out) for the stacked Q weights
        torch.testing.assert_close(s, w.abs().amax(-1) / 127)
        assert torch.equal(q.abs().amax(-1).int(), torch.full(s.shape, 127, dtype=torch.int32)), k
        assert len(torch.unique(s)) > 1  # a real per-channel scale, not a per-tensor one
        assert (Q.dequantize_int8(q, s) - w).abs().le(s.unsqueeze(-1) / 2 + 1e-7).all(), k


def test_int8_all_zero_channels_dequantize_to_zero(tmp_path):
    fresh = make_world_model("tiny", seed=0)  # reward/Q last weights are zero at init
    Q.save_quantized(fresh, tmp_path / "z.pt", "int8")
    loaded = load_checkpoint(tmp_path / "z.pt")
    for k in ("_reward.2.weight", "_Qs.params.2.weight"):
        assert torch.equal(loaded.state_dict()[k], torch.zeros_like(fresh.state_dict()[k]))


def test_int8_dynamic_matmul_path(tiny, batch):
    deq = Q.fake_quantize(tiny, "int8")
    dyn = Q.int8_dynamic_model(deq)
    assert isinstance(dyn._dynamics[1], Q.DynamicInt8Linear) and isinstance(dyn._pi[2], Q.DynamicInt8Linear)
    rel = _relative_errors(deq, dyn, batch)
    assert max(rel.values()) < 0.1, rel  # activations quantized per call on top of the int8 weights
    planner = BatchedPlanner(dyn, SMALL_PLANNER)
    action = planner.act(batch["obs"][:2], batch["task"][:2], torch.ones(2, dtype=torch.bool))
    assert action.shape == (2, tiny.cfg.action_dim) and torch.isfinite(action).all()


# ------------------------------------------------------------------------------------ in precision
def test_bf16_model_runs_in_bf16_on_cpu(tiny, batch, tmp_path):
    Q.save_quantized(tiny, tmp_path / "b.pt", "bf16")
    model = load_checkpoint(tmp_path / "b.pt", dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    obs, a, task = batch["obs"].bfloat16(), batch["action"].bfloat16(), batch["task"]
    with torch.no_grad():
        z = model.encode(obs, task)
        outs = {"encode": z, "next": model.next(z, a, task), "reward": model.reward(z, a, task),
                "pi": model.pi(z, task)[0], "Q": model.Q(z, a, task, return_type="all")}
    for name, out in outs.items():
        assert out.dtype == torch.bfloat16 and torch.isfinite(out).all(), name
    model = Q.to_precision(model, "bf16")
    assert model.discounts.dtype == torch.float32  # 0.99 stays 0.99
    rel = _relative_errors(tiny, model, batch, torch.bfloat16)
    assert max(rel.values()) <= 2 * TOLERANCE["bf16"], rel
    planner = BatchedPlanner(model, SMALL_PLANNER, precision="bf16")
    action = planner.act(batch["obs"][:3], task[:3], torch.ones(3, dtype=torch.bool))
    assert action.dtype == torch.float32 and torch.isfinite(action).all()


def test_load_for_inference_picks_the_stored_precision(tiny, tmp_path):
    for fmt in Q.FORMATS:
        Q.save_quantized(tiny, tmp_path / f"{fmt}.pt", fmt)
    model, precision = Q.load_for_inference(tmp_path / "bf16.pt")
    assert precision == "bf16" and model._dynamics[0].weight.dtype == torch.bfloat16
    model, precision = Q.load_for_inference(tmp_path / "fp16.pt")  # CPU: no fp16 autocast
    assert precision == "fp32" and model._dynamics[0].weight.dtype == torch.float32
    model, precision = Q.load_for_inference(tmp_path / "int8.pt", int8_matmul=True)
    assert precision == "fp32" and isinstance(model._reward[1], Q.DynamicInt8Linear)
    model, _ = Q.load_for_inference(tmp_path / "int8.pt")
    assert isinstance(model._reward[1], torch.nn.Linear)


# ------------------------------------------------------------------------------------ bad input
def test_unknown_format_is_one_sentence_error(tiny, tmp_path):
    with pytest.raises(ValueError, match=r"unknown quantization format 'int4'; valid formats are fp16, bf16, int8"):
        Q.save_quantized(tiny, tmp_path / "x.pt", "int4")
    assert not (tmp_path / "x.pt").exists()


def test_cli_unknown_format_and_non_checkpoint_exit_2(tiny, tmp_path, capsys):
    save_checkpoint(tiny, tmp_path / "m.pt")
    with pytest.raises(SystemExit) as e:
        Q.main(["--checkpoint", str(tmp_path / "m.pt"), "--format", "int4", "--output", str(tmp_path / "o.pt")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "'int4'" in err and "fp16, bf16, int8" in err
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError):
        load_checkpoint(text)
    for bad in (text, tmp_path / "missing.pt"):
        with pytest.raises(SystemExit) as e:
            Q.main(["--checkpoint", str(bad), "--format", "fp16", "--output", str(tmp_path / "o.pt")])
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "o.pt").exists()


def test_file_with_unknown_quantization_record_is_a_checkpoint_error(tiny, tmp_path):
    obj = Q.quantized_checkpoint(tiny, "fp16")
    obj["quantization"]["format"] = "int4"
    torch.save(obj, tmp_path / "q.pt")
    with pytest.raises(CheckpointError, match="int4"):
        load_checkpoint(tmp_path / "q.pt")


def test_cli_prints_sizes_and_output_differences(tiny, tmp_path, capsys):
    save_checkpoint(tiny, tmp_path / "m.pt")
    result = Q.main(["--checkpoint", str(tmp_path / "m.pt"), "--format", "int8", "--output", str(tmp_path / "o.pt"),
                     "--batch", "32"])
    out = capsys.readouterr().out
    assert "% of fp32" in out and "max abs output difference" in out
    assert result["output_bytes"] == os.path.getsize(tmp_path / "o.pt")
    assert result["fp32_bytes"] == os.path.getsize(tmp_path / "m.pt")
    assert set(result["errors"]["stored"]) == {"encoder", "dynamics", "reward", "Q", "pi"}


# ------------------------------------------------------------------------------------ export
def test_export_official_round_trip_gives_identical_outputs(tiny, batch, tmp_path):
    export_official(tiny, tmp_path / "official.pt")
    raw = torch.load(tmp_path / "official.pt", weights_only=True)["model"]
    assert list(raw)[:3] == ["_action_masks", "log_std_min", "log_std_dif"]
    assert raw["log_std_min"].dtype == torch.int64 and int(raw["log_std_min"]) == -10
    assert int(raw["log_std_dif"]) == 12
    assert raw["_Qs.params.__batch_size"] == torch.Size([tiny.cfg.num_q]) and raw["_target_Qs_params.__device"] is None
    assert torch.equal(raw["_detach_Qs_params.1.ln.weight"], raw["_Qs.params.1.ln.weight"])
    loaded = load_checkpoint(tmp_path / "official.pt")
    assert loaded.checkpoint_info["layout"] == "new"
    ref, out = Q.head_outputs(tiny, batch), Q.head_outputs(loaded, batch)
    for head in ref:
        assert torch.equal(ref[head], out[head]), head
    for k, v in tiny.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_export_matches_official_new_layout_fixture():
    fixture = torch.load(_need(NEW_LAYOUT_FIXTURE), weights_only=True, map_location="cpu")["model"]
    if FP16_FIXTURE.is_file():
        exported = official_state_dict(load_checkpoint(FP16_FIXTURE))
    else:
        exported = official_state_dict(make_world_model(1, seed=0))
    assert len(exported) == len(fixture) == 80
    assert list(exported) == list(fixture)
    for k, v in fixture.items():
        e = exported[k]
        if isinstance(v, torch.Tensor):
            assert e.shape == v.shape and e.dtype == v.dtype, k
            if FP16_FIXTURE.is_file():
                assert torch.equal(e, v), k
        else:
            assert type(e) is type(v) and e == v, k


# ------------------------------------------------------------------------------------ paper formats
@pytest.mark.filterwarnings("ignore:TypedStorage is deprecated")  # torch internals when loading qint8
def test_paper_int8_and_mixed_formats(tiny, tmp_path):
    sd = paper_state_dict(tiny, "int8")
    assert "_Qs.params.9" in sd and "_target_Qs.params.0" in sd and "_action_masks" not in sd
    for k, v in sd.items():
        assert v.dtype == torch.qint8 and v.q_scale() == 1.0 and v.q_zero_point() == 0, k
    w = tiny.state_dict()["_dynamics.1.weight"]
    assert torch.equal(sd["_dynamics.1.weight"].dequantize(), torch.round(w).clamp(-128, 127))
    mixed = paper_state_dict(tiny, "mixed")
    assert mixed["_pi.0.weight"].dtype == torch.float16 and mixed["_Qs.params.4"].dtype == torch.qint8
    write_paper_checkpoint(tiny, tmp_path / "paper.pt", "mixed")
    with pytest.warns(UserWarning, match=r"20 int8 tensors .* those tensors were rounded to integers and are "
                                         r"destroyed, the other \d+ are intact .* _Qs, _target_Qs are unusable"):
        model = load_checkpoint(tmp_path / "paper.pt")
    assert model.checkpoint_info["stored_dtypes"] == ["float16", "qint8"]
    write_paper_checkpoint(tiny, tmp_path / "int8.pt", "int8")
    with pytest.warns(UserWarning, match="every weight of the model was rounded to an integer: the model is destroyed"):
        assert load_checkpoint(tmp_path / "int8.pt").checkpoint_info["stored_dtypes"] == ["qint8"]
    assert torch.equal(model.state_dict()["_Qs.params.1.weight"], torch.round(tiny.state_dict()["_Qs.params.1.weight"]))


# ------------------------------------------------------------------------------------ the fixture
def test_fixture_file_ratios(tmp_path):
    model = load_checkpoint(_need(FP16_FIXTURE))
    save_checkpoint(model, tmp_path / "fp32.pt")
    fp32 = os.path.getsize(tmp_path / "fp32.pt")
    assert fp32 == Q.fp32_reference_bytes(model)
    ratios = {fmt: Q.save_quantized(model, tmp_path / f"{fmt}.pt", fmt) / fp32 for fmt in Q.FORMATS}
    assert abs(ratios["fp16"] - 0.5) <= 0.005 and abs(ratios["bf16"] - 0.5) <= 0.005, ratios
    assert ratios["int8"] <= 0.27, ratios
    # fp16 storage of a model released in fp16 is lossless
    assert all(torch.equal(a, b) for a, b in zip(load_checkpoint(tmp_path / "fp16.pt").state_dict().values(),
                                                  model.state_dict().values()))


def test_cli_checks_batch_and_output_before_writing_anything(tiny, tmp_path, capsys):
    save_checkpoint(tiny, tmp_path / "m.pt")
    before = (tmp_path / "m.pt").read_bytes()
    cases = ((["--output", str(tmp_path / "m.pt")], "is the input checkpoint"),
             (["--output", str(tmp_path / "q.pt"), "--batch", "0"], "batch must be at least 1"),
             (["--output", str(tmp_path)], "is a folder"))
    for extra, message in cases:
        with pytest.raises(SystemExit) as e:
            Q.main(["--checkpoint", str(tmp_path / "m.pt"), "--format", "fp16", *extra])
        err = capsys.readouterr().err
        assert e.value.code == 2 and message in err and err.count("\n") == 1
    assert (tmp_path / "m.pt").read_bytes() == before and not (tmp_path / "q.pt").exists()


@pytest.mark.parametrize("fmt, stored", [("fp16", ["float16"]), ("bf16", ["bfloat16"]),
                                         ("int8", ["float32", "int8"])])  # int8 weights; fp32 biases, norms
def test_stored_dtypes_report_the_file_not_the_loaded_model(tiny, tmp_path, fmt, stored):
    Q.save_quantized(tiny, tmp_path / "q.pt", fmt)
    model = load_checkpoint(tmp_path / "q.pt")
    assert model.checkpoint_info["stored_dtypes"] == stored
    assert next(model.parameters()).dtype == torch.float32  # what was loaded: dequantized to fp32


# ------------------------------------------------------------------------------------ export CLI
def test_export_cli_round_trips_the_released_files(tmp_path):
    """official-old + fp16 of the bundled TD-MPC-Opt file gives back that file's 61 tensors exactly;
    official-new gives the 80 entries the official code saves (checked against its own file when
    ../shared is present)."""
    from tdmpc_lib.checkpoint import bundled_checkpoint
    from tdmpc_lib.export import main as export_main

    released = torch.load(bundled_checkpoint("tdmpc-opt-mt30-1M"), map_location="cpu", weights_only=True)["model"]
    assert export_main(["--checkpoint", "tdmpc-opt-mt30-1M", "--output", str(tmp_path / "old.pt"),
                        "--layout", "official-old", "--dtype", "fp16"]) == 0
    old = torch.load(tmp_path / "old.pt", weights_only=True)["model"]
    assert list(old) == list(released) and len(old) == 61
    assert all(old[k].dtype == torch.float16 and torch.equal(old[k], released[k]) for k in released)
    assert export_main(["--checkpoint", "tdmpc-opt-mt30-1M", "--output", str(tmp_path / "new.pt")]) == 0
    new = torch.load(tmp_path / "new.pt", weights_only=True)["model"]
    assert len(new) == 80 and new["_Qs.params.0.weight"].dtype == torch.float32
    if NEW_LAYOUT_FIXTURE.is_file():  # what the official code itself wrote for these weights
        official = torch.load(NEW_LAYOUT_FIXTURE, map_location="cpu", weights_only=True)["model"]
        assert list(new) == list(official)
        for k, v in official.items():
            assert (torch.equal(new[k], v) if isinstance(v, torch.Tensor) else new[k] == v), k
    for path in (tmp_path / "old.pt", tmp_path / "new.pt"):  # and we read both back as the same model
        a, b = load_checkpoint(path), load_checkpoint("tdmpc-opt-mt30-1M")
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_export_cli_bad_input(tmp_path, capsys):
    from tdmpc_lib.export import main as export_main

    save_checkpoint(make_world_model("tiny", seed=0), tmp_path / "m.pt")
    for args, message in ((["--output", str(tmp_path / "m.pt")], "is the input checkpoint"),
                          (["--output", str(tmp_path)], "is a folder")):
        assert export_main(["--checkpoint", str(tmp_path / "m.pt"), *args]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    with pytest.raises(SystemExit):
        export_main(["--checkpoint", str(tmp_path / "m.pt"), "--output", str(tmp_path / "x.pt"), "--layout", "v3"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]
