import re
import warnings
from pathlib import Path

import pytest
import torch

from tdmpc_lib import CheckpointError, load_checkpoint, make_world_model, save_checkpoint
from tdmpc_lib.checkpoint import _Q_NAMES, download_checkpoint


def _outputs(m, seed=0):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(16, 24, generator=g)
    task = torch.arange(16) % 30
    a = torch.rand(16, 6, generator=g) * 2 - 1
    with torch.no_grad():
        z = m.encode(obs, task)
        out = {"z": z, "next": m.next(z, a, task), "reward": m.reward(z, a, task),
               "pi": m._pi(m.task_emb(z, task)), "Q": m.Q(z, a, task, "all"),
               "target_Q": m.Q(z, a, task, "all", target=True)}
    return out


def _to_old_layout(model) -> dict:
    """Our state dict -> the OLD official layout (flat _Qs.params.{j}, no masks)."""
    old = {}
    for k, v in model.state_dict().items():
        m = re.fullmatch(r"(_Qs|_target_Qs)\.params\.(\d)\.(.+)", k)
        if m:
            j = 4 * int(m.group(2)) + _Q_NAMES.index(m.group(3))
            old[f"{m.group(1)}.params.{j}"] = v
        elif k != "_action_masks":
            old[k] = v
    return old


def test_fixture_old_fp16_loads_strictly_with_inferred_architecture(fp16_fixture):
    raw = torch.load(fp16_fixture, map_location="cpu", weights_only=True)["model"]
    m = load_checkpoint(fp16_fixture)
    assert m.total_params == 1_426_427
    assert m.cfg.size == 1 and m.cfg.task_set == "mt30" and m.cfg.num_q == 2 and m.cfg.obs_dim == 24
    assert m.checkpoint_info["layout"] == "old" and m.checkpoint_info["stored_dtypes"] == ["float16"]
    sd = m.state_dict()
    assert torch.equal(sd["_encoder.state.0.weight"], raw["_encoder.state.0.weight"].float())
    assert torch.equal(sd["_Qs.params.1.ln.bias"], raw["_Qs.params.7"].float())  # j=7 -> layer 1 ln.bias
    assert torch.equal(sd["_target_Qs.params.2.weight"], raw["_target_Qs.params.8"].float())
    assert sum(v.numel() for k, v in raw.items()) == 1_980_357


def test_new_layout_fixture_gives_the_same_outputs_as_the_old_fp16_file(fp16_fixture, new_layout_fixture):
    old, new = load_checkpoint(fp16_fixture), load_checkpoint(new_layout_fixture)
    assert new.checkpoint_info["layout"] == "new"
    for k, v in _outputs(old).items():
        assert torch.equal(v, _outputs(new)[k]), k


def test_intermediate_layout_roundtrip(tmp_path, new_layout_fixture):
    raw = torch.load(new_layout_fixture, map_location="cpu", weights_only=True)["model"]
    inter = dict(raw)
    for k, v in raw.items():
        for new, dup in (("_detach_Qs_params.", "_detach_Qs.params."), ("_target_Qs_params.", "_target_Qs.params.")):
            if k.startswith(new):
                inter[dup + k[len(new):]] = v
    assert len(inter) == 104
    torch.save({"model": inter}, tmp_path / "inter.pt")
    m = load_checkpoint(tmp_path / "inter.pt")
    assert m.checkpoint_info["layout"] == "intermediate"
    ref = load_checkpoint(new_layout_fixture)
    assert torch.equal(_outputs(m)["Q"], _outputs(ref)["Q"])


def test_own_format_roundtrip_and_dtype(tmp_path):
    m = make_world_model("tiny", seed=1)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    save_checkpoint(m, tmp_path / "own.pt", step=7)
    back = load_checkpoint(tmp_path / "own.pt")
    assert back.checkpoint_info["layout"] == "ours" and back.cfg == m.cfg
    for k, v in _outputs(m.eval()).items():
        assert torch.equal(v, _outputs(back)[k]), k
    assert load_checkpoint(tmp_path / "own.pt", dtype=torch.bfloat16)._pi[0].weight.dtype == torch.bfloat16


def test_loaded_model_is_built_uninitialized_and_owns_every_tensor(tmp_path):
    """load_checkpoint skips random initialisation (WorldModel.uninitialized) and takes the file's
    tensors: every entry, the constant buffers and trainability must still be exactly right."""
    m = make_world_model("tiny", seed=3)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    state = {k: v for k, v in _to_old_layout(m).items() if not k.startswith("_target_Qs.")}
    torch.save({"model": state}, tmp_path / "no_target.pt")  # a file without target Qs
    back = load_checkpoint(tmp_path / "no_target.pt")
    assert torch.equal(back.discounts, m.discounts) and torch.equal(back._action_masks, m._action_masks)
    ours, theirs = back.state_dict(), m.state_dict()
    for k, v in theirs.items():
        want = theirs[k.replace("_target_Qs.", "_Qs.")] if k.startswith("_target_Qs.") else v
        assert torch.equal(ours[k], want), k
    assert all(not t.is_meta for t in list(back.parameters()) + list(back.buffers()))
    # target Qs start as a copy of the Qs, not as the same memory
    ptrs = [t.data_ptr() for t in back.state_dict().values()]
    assert len(ptrs) == len(set(ptrs))
    assert back.total_params == m.total_params
    assert not any(p.requires_grad for p in back._target_Qs.parameters())


def test_old_layout_of_a_fresh_model_infers_every_preset_shape(tmp_path):
    m = make_world_model(5, seed=0)
    torch.save({"model": _to_old_layout(m)}, tmp_path / "m5.pt")
    back = load_checkpoint(tmp_path / "m5.pt")
    assert back.cfg.size == 5 and back.cfg.task_dim == 64 and back.cfg.num_q == 5
    assert back.total_params == 5_241_066


def test_wrong_size_names_key_and_both_shapes(tmp_path):
    m = make_world_model(5, seed=0)
    torch.save({"model": _to_old_layout(m)}, tmp_path / "m5.pt")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path / "m5.pt", size=1)
    msg = str(e.value)
    assert "'_task_emb.weight'" in msg and "(30, 64)" in msg and "(30, 96)" in msg and "1M mt30" in msg
    assert "\n" not in msg


def test_missing_entry_is_named(tmp_path):
    sd = _to_old_layout(make_world_model(1, seed=0))
    del sd["_reward.1.ln.weight"]
    torch.save({"model": sd}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"_reward\.1\.ln\.weight.*missing"):
        load_checkpoint(tmp_path / "bad.pt")


def test_truncated_corrupt_and_foreign_files(tmp_path, fp16_fixture):
    data = fp16_fixture.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated, corrupt"):
        load_checkpoint(tmp_path / "trunc.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="truncated, corrupt|not a PyTorch"):
        load_checkpoint(tmp_path / "text.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a TD-MPC2 world-model checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="not a TD-MPC2 checkpoint"):
        load_checkpoint(tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_scale_one_int8_files_are_dequantized_and_reported_destroyed(tmp_path, fp16_fixture):
    raw = torch.load(fp16_fixture, map_location="cpu", weights_only=True)["model"]
    broken = {k: torch.quantize_per_tensor(v.float(), 1.0, 0, torch.qint8) for k, v in raw.items()}
    torch.save({"model": broken}, tmp_path / "int8.pt")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        m = load_checkpoint(tmp_path / "int8.pt")
    assert any("destroyed" in str(x.message) for x in w)
    assert torch.equal(m.state_dict()["_pi.0.weight"], torch.round(raw["_pi.0.weight"].float()))
    assert m.checkpoint_info["warnings"]


def test_download_uses_hub_repo_and_layout(monkeypatch, tmp_path):
    calls = []

    def fake_download(repo_id, filename, revision=None, cache_dir=None):
        calls.append((repo_id, filename))
        return str(tmp_path / "x.pt")

    import huggingface_hub
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    assert download_checkpoint("mt30-317M") == str(tmp_path / "x.pt")
    assert calls == [("nicklashansen/tdmpc2", "multitask/mt30-317M.pt")]
    with pytest.raises(CheckpointError, match="unknown hub checkpoint"):
        download_checkpoint("mt31-1M")


def test_download_offline_uses_cache_or_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as c
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    with pytest.raises(CheckpointError, match="not in the local Hugging Face cache"):
        download_checkpoint("mt30-1M", cache_dir=tmp_path)
    # a cached copy (the hub cache layout) is found without network
    snap = tmp_path / "models--nicklashansen--tdmpc2" / "snapshots" / ("a" * 40) / "multitask"
    snap.mkdir(parents=True)
    save_checkpoint(make_world_model("tiny"), snap / "mt30-1M.pt")
    (tmp_path / "models--nicklashansen--tdmpc2" / "refs").mkdir()
    (tmp_path / "models--nicklashansen--tdmpc2" / "refs" / "main").write_text("a" * 40)
    path = download_checkpoint("mt30-1M", cache_dir=tmp_path)
    assert load_checkpoint(path).cfg.size == "tiny"


# ---------------------------------------------------------------------------- bundled checkpoints
BUNDLED_SHA256 = "3e35489756abf6e0e244371698d063487f70ffb5d109e3d8c84ae7dda5955bfb"


def test_bundled_checkpoint_loads_by_short_name_and_is_verified():
    from tdmpc_lib import checkpoint as ck

    entry = ck.BUNDLED_CHECKPOINTS["tdmpc-opt-mt30-1M"]
    assert entry.sha256 == BUNDLED_SHA256 and entry.bytes == 3_982_258 and "MIT" in entry.license
    assert entry.path.parent == ck.ASSETS_DIR and entry.path.stat().st_size == entry.bytes
    assert (ck.ASSETS_DIR / "LICENSE-tdmpc-opt.txt").is_file()
    m = load_checkpoint("tdmpc-opt-mt30-1M")
    assert m.cfg.latent_dim == 128 and m.cfg.num_q == 2 and m.cfg.num_tasks == 30 and m.cfg.task_set == "mt30"
    assert m.total_params == 1_426_427
    assert m.checkpoint_info["sha256"] == BUNDLED_SHA256 and m.checkpoint_info["layout"] == "old"
    assert m.checkpoint_info["path"] == ck.bundled_checkpoint("tdmpc-opt-mt30-1M") == str(entry.path)
    assert len(ck._SHA256_CACHE) >= 1


def test_one_rule_turns_a_checkpoint_spec_into_a_file(tmp_path, monkeypatch):
    """checkpoint_path (used by load_checkpoint, the study's teacher and the viewer): an existing
    file wins over a name, a bundled name is the shipped file, a hub name is downloaded, and
    anything else is returned as given."""
    from tdmpc_lib import checkpoint as ck

    assert ck.checkpoint_path("tdmpc-opt-mt30-1M") == ck.BUNDLED_CHECKPOINTS["tdmpc-opt-mt30-1M"].path
    monkeypatch.setattr(ck, "download_checkpoint", lambda name: f"/hub-cache/{name}.pt")
    assert str(ck.checkpoint_path("mt30-48M")) == "/hub-cache/mt30-48M.pt"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mt30-48M").write_bytes(b"a local file of that name")
    assert ck.checkpoint_path("mt30-48M") == Path("mt30-48M")
    assert ck.checkpoint_path("no/such.pt") == Path("no/such.pt")
    assert ck.is_checkpoint_name("mt80-317M") and not ck.is_checkpoint_name("model.pt")


def test_bundled_checkpoint_is_hashed_once_per_process(monkeypatch):
    from tdmpc_lib import checkpoint as ck

    ck.bundled_checkpoint("tdmpc-opt-mt30-1M")  # fills the cache
    calls = []
    monkeypatch.setattr(ck, "file_sha256", lambda p: calls.append(p) or "x")
    ck.bundled_checkpoint("tdmpc-opt-mt30-1M")
    assert calls == []


def test_corrupted_bundled_checkpoint_names_the_sha256_mismatch(monkeypatch, tmp_path):
    import dataclasses

    from tdmpc_lib import checkpoint as ck

    entry = ck.BUNDLED_CHECKPOINTS["tdmpc-opt-mt30-1M"]
    data = bytearray(entry.path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte changed, same size
    bad = tmp_path / entry.file
    bad.write_bytes(bytes(data))
    monkeypatch.setitem(ck.BUNDLED_CHECKPOINTS, "tdmpc-opt-mt30-1M", dataclasses.replace(entry, file=str(bad)))
    with pytest.raises(CheckpointError) as e:
        load_checkpoint("tdmpc-opt-mt30-1M")
    msg = str(e.value)
    assert "sha256" in msg and BUNDLED_SHA256[:12] in msg and str(bad) in msg and "git checkout" in msg
    assert ck.file_sha256(bad)[:12] in msg and "\n" not in msg
    bad.unlink()
    with pytest.raises(CheckpointError, match=r"missing.*does not exist.*git checkout"):
        load_checkpoint("tdmpc-opt-mt30-1M")


def test_unknown_short_name_lists_the_bundled_name():
    from tdmpc_lib.checkpoint import bundled_checkpoint

    with pytest.raises(CheckpointError, match="does not exist.*'tdmpc-opt-mt30-1M'"):
        load_checkpoint("tdmpc-opt-mt30-2M")
    with pytest.raises(CheckpointError, match="unknown bundled checkpoint.*tdmpc-opt-mt30-1M"):
        bundled_checkpoint("tdmpc-opt-mt30-2M")
    with pytest.raises(CheckpointError, match="unknown hub checkpoint.*tdmpc-opt-mt30-1M"):
        download_checkpoint("mt31-1M")


def test_folders_and_foreign_files_are_named_for_what_they_are(tmp_path):
    """A folder is not 'missing'; a PNG, a JSON or random bytes are not 'pickled objects'."""
    (tmp_path / "run").mkdir()
    with pytest.raises(CheckpointError, match="is a folder, not a file; pass the .pt file inside it"):
        load_checkpoint(tmp_path / "run")
    foreign = {"fig.png": b"\x89PNG\r\n\x1a\n" + bytes(64), "r.json": b'{"score": 1}',
               "noise.pt": bytes(range(7, 200))}
    for name, content in foreign.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError, match=r"is not a PyTorch checkpoint \(it starts with") as e:
            load_checkpoint(tmp_path / name)
        assert "\n" not in str(e.value)


@pytest.mark.parametrize("kwargs, message", [
    ({"device": "tpu9"}, "device 'tpu9' is not a device; use 'cpu', 'cuda' or 'cuda:N'"),
    ({"dtype": "fp8"}, "dtype 'fp8' is not supported; use one of fp32, bf16, fp16"),
] + ([] if torch.cuda.is_available() else
     [({"device": "cuda"}, "'cuda' was requested but no CUDA GPU is available; use device 'cpu'")]))
def test_device_and_dtype_are_checked_before_reading(kwargs, message):
    with pytest.raises(CheckpointError, match=re.escape(message)):
        load_checkpoint("tdmpc-opt-mt30-1M", **kwargs)


def test_dtype_names_are_accepted():
    m = load_checkpoint("tdmpc-opt-mt30-1M", dtype="bf16")
    assert next(m.parameters()).dtype == torch.bfloat16
