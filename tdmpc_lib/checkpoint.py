"""Checkpoint I/O (official tdmpc2/tdmpc2.py, TDMPC2.load; common/layers.py, api_model_conversion).

`load_checkpoint` reads, with `torch.load(weights_only=True)`:
- official TD-MPC2 files in the OLD (flat `_Qs.params.{j}`), INTERMEDIATE and NEW
  (`_Qs.params.{layer}.{name}`, `_target_Qs_params.*`, `_detach_Qs_params.*`) key layouts,
- TD-MPC-Opt fp16 / int8 / mixed files (quantized tensors are dequantized; the scale-1.0
  int8 files are detected and reported as destroyed),
- our own checkpoints (`save_checkpoint`, written atomically, with the resolved config).
The architecture is inferred from tensor shapes unless the caller names a size to expect.

Besides paths, `load_checkpoint` takes short names: hub names such as 'mt30-317M' (downloaded
from the Hugging Face hub) and the names of `BUNDLED_CHECKPOINTS`, files shipped inside the
package (tdmpc_lib/assets) that are verified by sha256 before use.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import warnings
from pathlib import Path

import torch

from .choices import QuantFormat, options
from .device import resolve_device, resolve_dtype
from .files import atomic_write
from .config import PRESETS, ModelConfig, model_config
from .tasks import TASK_SETS
from .world_model import WorldModel

FORMAT_NAME = "tdmpc-distill"
FORMAT_VERSION = 1
HUB_REPO = "nicklashansen/tdmpc2"
HUB_CHECKPOINTS = tuple(f"{ts}-{s}M" for ts in ("mt30", "mt80") for s in (1, 5, 19, 48, 317))
_Q_NAMES = ("weight", "bias", "ln.weight", "ln.bias")  # OLD flat index j -> name [j % 4]
ASSETS_DIR = Path(__file__).resolve().parent / "assets"


class CheckpointError(ValueError):
    """A checkpoint cannot be read or does not fit the requested model (one-line message)."""


@dataclasses.dataclass(frozen=True)
class BundledCheckpoint:
    """A checkpoint file shipped inside the package (see tdmpc_lib/assets/README.md)."""
    file: str    # file name inside ASSETS_DIR (an absolute path is used as is)
    sha256: str  # expected sha256 of the file, hex
    bytes: int   # expected size in bytes
    source: str  # where the file comes from
    license: str  # its license, and the file in ASSETS_DIR holding the notice

    @property
    def path(self) -> Path:
        return ASSETS_DIR / self.file


BUNDLED_CHECKPOINTS: dict[str, BundledCheckpoint] = {
    # The TD-MPC-Opt distilled 1M MT30 student (fp16, OLD layout): the study's offline default teacher.
    "tdmpc-opt-mt30-1M": BundledCheckpoint(
        file="tdmpc-opt_mt30_1M_dist045_fp16.pt",
        sha256="3e35489756abf6e0e244371698d063487f70ffb5d109e3d8c84ae7dda5955bfb",
        bytes=3_982_258,
        source="https://github.com/dmytro-kuzmenko/td-mpc-opt (tdmpc2/models/mt30_1M_steps_045dist_fp16.pt)",
        license="MIT (LICENSE-tdmpc-opt.txt)"),
}


# ---------------------------------------------------------------------------- reading
def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_SHA256_CACHE: dict[tuple[str, int, int], str] = {}


def cached_file_sha256(path: str | os.PathLike) -> str:
    """`file_sha256`, computed once per process for each (path, mtime, size)."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_mtime_ns, st.st_size)
    if key not in _SHA256_CACHE:
        _SHA256_CACHE[key] = file_sha256(path)
    return _SHA256_CACHE[key]


def bundled_checkpoint(name: str) -> str:
    """Path of the bundled checkpoint `name` (a key of BUNDLED_CHECKPOINTS), after checking
    its sha256 (hashed once per process while the file is unchanged)."""
    entry = BUNDLED_CHECKPOINTS.get(name)
    if entry is None:
        raise CheckpointError(f"unknown bundled checkpoint {name!r}; bundled checkpoints are "
                              f"{', '.join(BUNDLED_CHECKPOINTS)} (hub names: {', '.join(HUB_CHECKPOINTS)})")
    path = entry.path
    fix = (f"restore it with `git checkout -- tdmpc_lib/assets/{Path(entry.file).name}` in the repository "
           f"or reinstall tdmpc-distill")
    if not path.is_file():
        raise CheckpointError(f"bundled checkpoint {name!r} is missing: {path} does not exist (expected sha256 "
                              f"{entry.sha256[:12]}..., actual: no file); {fix}")
    actual = cached_file_sha256(path)
    if actual != entry.sha256:
        size = path.stat().st_size
        size = "" if size == entry.bytes else f", {size} bytes instead of {entry.bytes}"
        raise CheckpointError(f"bundled checkpoint {name!r} at {path} fails its sha256 check (expected sha256 "
                              f"{entry.sha256[:12]}..., actual {actual[:12]}...{size}), so the file is corrupt "
                              f"or was replaced; {fix}")
    return str(path)


def read_checkpoint_file(path: str | os.PathLike) -> dict:
    """torch.load(weights_only=True) with one-line errors for missing/corrupt/foreign files."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder, not a file; pass the .pt file inside it "
                              f"(a training run keeps model.pt and checkpoints/step_N.pt)")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass a .pt file path, a bundled checkpoint name "
                              f"({', '.join(map(repr, BUNDLED_CHECKPOINTS))}) or a hub name such as "
                              f"{HUB_CHECKPOINTS[0]!r}")
    with open(path, "rb") as f:
        magic = f.read(4)
    # torch.save writes a zip archive (PK..); the legacy format starts with a pickle protocol byte.
    if magic[:2] != b"PK" and magic[:1] != b"\x80":
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (it starts with {magic!r}, neither a zip "
                              f"archive nor a pickle); pass the .pt file a TD-MPC2 run saved")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for bad files; all mean "cannot read"
        if "Weights only load failed" in str(e):  # a pickle of arbitrary objects, e.g. a dataset chunk
            raise CheckpointError(f"cannot read checkpoint {path} safely: it holds pickled Python objects that "
                                  f"weights_only=True refuses, so it is not a model checkpoint") from None
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: the file is truncated, corrupt or not a "
                              f"PyTorch checkpoint ({first[:160]}); re-download or re-save it") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} is not a TD-MPC2 checkpoint: it holds a {type(obj).__name__}, "
                              f"expected a dict of tensors")
    return obj


def _state_of(obj: dict, path) -> dict:
    state = obj.get("model", obj)
    if not isinstance(state, dict) or "_encoder.state.0.weight" not in state:
        raise CheckpointError(f"{path} is not a TD-MPC2 world-model checkpoint: no '_encoder.state.0.weight' "
                              f"entry (found keys: {', '.join(list(map(str, state))[:5])}...)")
    return state


def _dequantize(state: dict, path) -> tuple[dict, list[str]]:
    """Dequantize torch quantized tensors; detect TD-MPC-Opt's scale-1.0 per-tensor int8."""
    out, broken = {}, []
    for k, v in state.items():
        if isinstance(v, torch.Tensor) and v.is_quantized:
            if v.qscheme() == torch.per_tensor_affine and v.q_scale() == 1.0 and v.q_zero_point() == 0:
                broken.append(k)
            v = v.dequantize()
        out[k] = v
    notes = []
    if broken:
        floats = sum(1 for v in state.values() if isinstance(v, torch.Tensor) and not v.is_quantized)
        what = ("every weight of the model was rounded to an integer: the model is destroyed (a TD-MPC-Opt "
                "int8 file)" if not floats else
                f"those tensors were rounded to integers and are destroyed, the other {floats} are intact (a "
                f"TD-MPC-Opt mixed file: {', '.join(sorted({k.split('.params')[0] for k in broken}))} are "
                f"unusable, so planning with this model is not meaningful)")
        msg = (f"{path}: {len(broken)} int8 tensors were quantized per tensor with scale 1.0, so {what}; use the "
               f"fp16 file or quantize with tdmpc_lib.quantize")
        warnings.warn(msg, stacklevel=3)
        notes.append(msg)
    return out, notes


def normalize_keys(state: dict) -> tuple[dict, dict]:
    """Any official layout -> our layout. Returns (tensors, extras) where extras holds the
    log-std bounds if the file stored them. Drops the gradient-free `_detach_Qs` copies and the
    tensordict metadata (`__batch_size`, `__device`)."""
    out, extras = {}, {}
    for k, v in state.items():
        if k.endswith("__batch_size") or k.endswith("__device") or k.startswith("_detach_Qs"):
            continue
        if k in ("log_std_min", "log_std_dif"):
            extras[k] = float(v)
            continue
        if not isinstance(v, torch.Tensor):
            continue
        m = re.fullmatch(r"(_Qs|_target_Qs)\.params\.(\d+)", k)  # OLD flat layout
        if m:
            j = int(m.group(2))
            k = f"{m.group(1)}.params.{j // 4}.{_Q_NAMES[j % 4]}"
        elif k.startswith("_target_Qs_params."):  # NEW target naming
            k = "_target_Qs.params." + k[len("_target_Qs_params."):]
        out.setdefault(k, v)
    return out, extras


def infer_config(state: dict, extras: dict | None = None, path="checkpoint") -> ModelConfig:
    """Architecture from tensor shapes (as built by official tdmpc2/common/world_model.py)."""
    extras = extras or {}
    try:
        enc = sorted(int(m.group(1)) for k in state
                     if (m := re.fullmatch(r"_encoder\.state\.(\d+)\.weight", k)))
        if "_task_emb.weight" in state:
            num_tasks, task_dim = state["_task_emb.weight"].shape
        else:
            num_tasks, task_dim = 0, 0
        enc_first, enc_last = state[f"_encoder.state.{enc[0]}.weight"], state[f"_encoder.state.{enc[-1]}.weight"]
        latent, obs_dim = enc_last.shape[0], enc_first.shape[1] - task_dim
        dyn0 = state["_dynamics.0.weight"]
        mlp_dim, action_dim = dyn0.shape[0], dyn0.shape[1] - latent - task_dim
        num_bins = state["_reward.2.weight"].shape[0]
        num_q = state["_Qs.params.0.weight"].shape[0]
    except KeyError as e:
        raise CheckpointError(f"{path}: required entry {e.args[0]!r} is missing; the file is incomplete "
                              f"or not a TD-MPC2 world model") from None
    fields = dict(obs_dim=obs_dim, action_dim=action_dim, num_tasks=num_tasks, task_dim=task_dim,
                  enc_dim=enc_first.shape[0] if len(enc) > 1 else 256, mlp_dim=mlp_dim, latent_dim=latent,
                  num_enc_layers=len(enc), num_q=num_q, num_bins=num_bins)
    if "log_std_min" in extras:
        fields["log_std_min"] = extras["log_std_min"]
        fields["log_std_max"] = extras["log_std_min"] + extras.get("log_std_dif", 12.0)
    if num_tasks == 0:
        return ModelConfig(task_set=None, action_dims=(), discounts=(), **fields)
    task_set = next((ts for ts in TASK_SETS.values() if len(ts) == num_tasks), None)
    if task_set is None:
        raise CheckpointError(f"{path}: the task embedding has {num_tasks} rows, which matches no known task "
                              f"set ({', '.join(f'{n}: {len(t)}' for n, t in TASK_SETS.items())})")
    cfg = ModelConfig(task_set=task_set.name, action_dims=task_set.action_dims,
                      discounts=task_set.discounts, **fields)
    for size in PRESETS:  # name the preset when the shapes are exactly one
        preset = model_config(size, task_set.name)
        if all(getattr(preset, f) == getattr(cfg, f) for f in fields if f not in ("log_std_min", "log_std_max")):
            cfg = dataclasses.replace(cfg, size=size)
            break
    return cfg


def load_state_strict(model: WorldModel, state: dict, path="checkpoint", what: str | None = None,
                      assign: bool = False) -> None:
    """load_state_dict(strict) with one-line errors naming the key and both shapes. `assign`:
    the model takes the (cast) tensors themselves instead of copying them into its own, for a
    model built by `WorldModel.uninitialized` (no second copy of a 317M model in memory)."""
    what = what or _describe(model.cfg)
    expected = model.state_dict()
    state = dict(state)
    if "_action_masks" in expected and "_action_masks" not in state:
        state["_action_masks"] = expected["_action_masks"]  # OLD files do not store the masks
    if "_target_Qs.params.0.weight" not in state and "_Qs.params.0.weight" in state:
        for k in list(state):  # a file without target Qs: start them as a copy (as the official WorldModel)
            if k.startswith("_Qs."):
                state["_target_Qs." + k[len("_Qs."):]] = state[k]
    for k, v in expected.items():
        if k not in state:
            raise CheckpointError(f"{path}: entry {k!r} (shape {tuple(v.shape)}) expected by a {what} is "
                                  f"missing; the file is incomplete or for a different architecture")
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{path}: entry {k!r} has shape {tuple(state[k].shape)} but a {what} expects "
                                  f"{tuple(v.shape)}; load it with the size it was trained with")
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise CheckpointError(f"{path}: unexpected entries {unexpected[:4]} for a {what}; the file is for "
                              f"a different architecture (e.g. an episodic model with a termination head)")
    if "_action_masks" in expected and not torch.equal(state["_action_masks"].float().cpu(),
                                                       expected["_action_masks"].cpu()):
        raise CheckpointError(f"{path}: stored action masks differ from the {model.cfg.task_set} task list; "
                              f"the checkpoint was trained on a different task order")
    if next(iter(expected.values())).is_meta:
        return  # a shape check against a meta-device reference model
    cast, seen = {}, set()
    for k, v in state.items():
        v = v.to(expected[k].dtype)
        if assign and (id(v) in seen or not v.is_contiguous()):
            v = v.clone(memory_format=torch.contiguous_format)  # e.g. target Qs started as the Qs
        seen.add(id(v))
        cast[k] = v
    model.load_state_dict(cast, strict=True, assign=assign)


def _describe(cfg: ModelConfig) -> str:
    size = f"{cfg.size}M" if isinstance(cfg.size, int) else (cfg.size or "custom-size")
    return f"{size} {cfg.task_set or 'single-task'} model"


def is_checkpoint_name(spec: str) -> bool:
    """A bundled or hub checkpoint name (no file of that name needs to exist)."""
    return spec in BUNDLED_CHECKPOINTS or spec in HUB_CHECKPOINTS


def checkpoint_path(spec: str | os.PathLike) -> Path:
    """The file of a checkpoint spec, the one rule every entry point follows: an existing file as
    given; else a bundled name -> the shipped file (sha256-checked), a hub name -> the downloaded
    (cached) file; anything else as given (reading it then names the missing file)."""
    path = Path(spec)
    if path.exists() or not is_checkpoint_name(str(spec)):
        return path
    if str(spec) in BUNDLED_CHECKPOINTS:
        return Path(bundled_checkpoint(str(spec)))
    return Path(download_checkpoint(str(spec)))


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric per-output-channel int8 back to fp32: q (..., out, in), scale (..., out)."""
    return q.float() * scale.float().unsqueeze(-1)


def dequantize_checkpoint(obj: dict) -> dict:
    """Our quantized checkpoint dict -> the same dict with an fp32 state dict (called by
    `load_checkpoint`; tdmpc_lib.quantize writes these files). The "quantization" entry is kept
    (without tensors) as a record."""
    meta = obj.get("quantization") or {}
    fmt = meta.get("format") if isinstance(meta, dict) else None
    if fmt not in options(QuantFormat):
        raise CheckpointError(f"checkpoint records an unknown quantization format {fmt!r}; this version "
                              f"reads {', '.join(options(QuantFormat))}")
    state, scales = obj.get("model"), obj.get("int8_scales") or {}
    if not isinstance(state, dict):
        raise CheckpointError("quantized checkpoint has no 'model' state dict")
    out = {}
    for k, v in state.items():
        if isinstance(v, torch.Tensor) and v.dtype == torch.int8:
            if k not in scales:
                raise CheckpointError(f"int8 entry {k!r} has no scale in 'int8_scales'; the file is incomplete")
            v = dequantize_int8(v, scales[k])
        elif isinstance(v, torch.Tensor) and v.is_floating_point():
            v = v.float()
        out[k] = v
    result = {k: v for k, v in obj.items() if k != "int8_scales"}
    result["model"] = out
    result["quantization"] = dict(meta, dequantized_on_load=True)
    return result


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu",
                    dtype: torch.dtype | str = torch.float32, size: str | int | None = None,
                    task_set: str | None = None) -> WorldModel:
    """Load any supported checkpoint into a ready WorldModel in eval mode.

    `size`/`task_set`, when given, state what the caller expects; a file of another size is
    then a one-line error instead of a silently different model. The returned model carries
    `checkpoint_info` (path, sha256, detected layout, stored dtypes, warnings).

    `path` may also be a short name (when no file of that name exists): a bundled checkpoint
    ('tdmpc-opt-mt30-1M', sha256-verified, no network) or a hub name such as 'mt30-317M'."""
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise CheckpointError(f"the checkpoint must be a file path or a checkpoint name, got {path!r}")
    try:
        device, dtype = resolve_device(device), resolve_dtype(dtype)
    except ValueError as e:
        raise CheckpointError(str(e)) from None
    name, path = str(path), checkpoint_path(path)
    # a bundled file was just verified: no second hash of it
    sha256 = BUNDLED_CHECKPOINTS[name].sha256 if name != str(path) and name in BUNDLED_CHECKPOINTS else None
    obj = read_checkpoint_file(path)
    ours = obj.get("format") == FORMAT_NAME
    # What the file stores, before anything is dequantized or cast on load.
    dtypes = sorted({str(v.dtype).replace("torch.", "") for v in _state_of(obj, path).values()
                     if isinstance(v, torch.Tensor)})
    if ours and obj.get("quantization"):
        obj = dequantize_checkpoint(obj)  # our own int8/fp16 files (tdmpc_lib.quantize)
    state = _state_of(obj, path)
    state, notes = _dequantize(state, path)
    layout = ("ours" if ours else "new" if any(k.startswith("_target_Qs_params.") for k in state)
              else "old" if "_Qs.params.0" in state else "unknown")
    if layout == "new" and any(k.startswith("_target_Qs.params.") for k in state):
        layout = "intermediate"
    state, extras = normalize_keys(state)
    if ours:
        cfg = ModelConfig.from_dict(obj["model_config"])
    else:
        cfg = infer_config(state, extras, path)
    if size is not None or task_set is not None:
        expected = model_config(size if size is not None else (cfg.size or 1),
                                task_set if task_set is not None else cfg.task_set)
        if not dataclasses.replace(cfg, size=expected.size) == expected:
            with torch.device("meta"):  # shapes only: no memory for a 317M comparison model
                reference = WorldModel(expected)
            load_state_strict(reference, state, path, _describe(expected))  # raises at the first mismatch
    model = WorldModel.uninitialized(cfg)  # every entry comes from the file
    load_state_strict(model, state, path, assign=True)
    model = model.to(device=device, dtype=dtype).eval()
    model.checkpoint_info = {"path": str(path), "sha256": sha256 or cached_file_sha256(path), "layout": layout,
                             "stored_dtypes": dtypes, "warnings": notes,
                             "quantization": obj.get("quantization") if ours else None}
    return model


# ---------------------------------------------------------------------------- writing
class _WriteErrorKeeper:
    """A file for torch.save that remembers the OSError of a failed write: torch's zip writer
    reports it as an unrelated RuntimeError ('unexpected pos ...'), and a full disk should read
    as a full disk."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.f.flush()


def _torch_save(obj, f) -> None:
    keeper = _WriteErrorKeeper(f)
    try:
        torch.save(obj, keeper)
    except RuntimeError:
        if keeper.error is not None:
            raise keeper.error from None
        raise


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over `path`, so a
    kill never leaves a half-written checkpoint behind (a full disk: OutputWriteError)."""
    atomic_write(path, lambda f: _torch_save(obj, f))


def save_checkpoint(model: WorldModel, path: str | os.PathLike, **extra) -> None:
    """Our format: {'format', 'format_version', 'model_config', 'model', ...extra}."""
    obj = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "model_config": model.cfg.to_dict(),
           "model": {k: v.detach().cpu() for k, v in model.state_dict().items()}, **extra}
    atomic_torch_save(obj, path)


# ---------------------------------------------------------------------------- hub
def cached_hub_checkpoint(name: str) -> str | None:
    """The local file of hub checkpoint `name` when it is in the Hugging Face cache (no network), else None."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(HUB_REPO, f"multitask/{name.removesuffix('.pt')}.pt")
    return found if isinstance(found, str) else None


def download_checkpoint(name: str, cache_dir: str | os.PathLike | None = None,
                        revision: str | None = None) -> str:
    """Fetch an official checkpoint from the Hugging Face hub (cached; honours HF_HUB_OFFLINE).

    `name` is a short name such as 'mt30-317M' (-> multitask/mt30-317M.pt) or a path inside
    the repo such as 'multitask/mt80-48M.pt'."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    filename = name if "/" in name else f"multitask/{name.removesuffix('.pt')}.pt"
    if "/" not in name and name.removesuffix(".pt") not in HUB_CHECKPOINTS:
        raise CheckpointError(f"unknown hub checkpoint {name!r}; choose one of {', '.join(HUB_CHECKPOINTS)} "
                              f"or give a path inside {HUB_REPO} (bundled checkpoints, which need no download: "
                              f"{', '.join(BUNDLED_CHECKPOINTS)})")
    try:
        return hf_hub_download(repo_id=HUB_REPO, filename=filename, revision=revision,
                               cache_dir=None if cache_dir is None else str(cache_dir))
    except LocalEntryNotFoundError:
        raise CheckpointError(f"{filename} is not in the local Hugging Face cache and the hub cannot be reached "
                              f"(offline mode or no network); download it once with network access") from None
