"""Post-training quantization of TD-MPC2 world models: fp16, bf16 and calibrated int8.

- fp16 / bf16: every floating tensor of the state dict (target Qs included) is cast.
  The model can also *run* in that precision: `to_precision(model, "bf16")` on CPU (planner
  precision "bf16"), "fp16" on CUDA.
- int8: every Linear weight (2-D, and the stacked (N_q, out, in) Q-ensemble weights) is
  quantized symmetrically per output channel (per ensemble member and channel):
  scale = max|w| / 127, q = round(w / scale) in [-127, 127]. LayerNorm, biases, the task
  embedding and the action masks stay fp32. Loading dequantizes (q * scale) to a normal
  fp32 model; on CPU `int8_dynamic_model` runs the Linear layers as int8 matmuls with
  dynamically quantized activations (fbgemm/x86), the Q ensemble stays dequantized.

Our quantized files are ordinary `save_checkpoint` dicts plus a "quantization" entry (and
"int8_scales" for int8); `checkpoint.load_checkpoint` reads them through
`checkpoint.dequantize_checkpoint`. FP32 reference for size ratios = `save_checkpoint` of the fp32
model (its state dict holds the online AND the target Q ensemble).

Only tdmpc_lib reads these files (they carry our own quantization record); to hand a model to
the official TD-MPC2 code, export it: python -m tdmpc_lib.export --checkpoint X --output Y.

CLI: python -m tdmpc_lib.quantize --checkpoint IN --format fp16|bf16|int8 --output OUT
"""
from __future__ import annotations

import copy
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from .checkpoint import (FORMAT_NAME, FORMAT_VERSION, CheckpointError, atomic_torch_save, dequantize_checkpoint,
                         dequantize_int8, load_checkpoint, save_checkpoint)
from .choices import QuantFormat, options
from .device import DTYPES
from .files import OutputLock, check_output_path
from .layers import NormedLinear
from .tasks import get_task_set
from .world_model import WorldModel

FORMATS = options(QuantFormat)
PRECISION_DTYPES = DTYPES  # format name -> torch dtype (one table: tdmpc_lib.device)
INT8_SCHEME = "symmetric-per-channel"
INT8_QMAX = 127


def check_format(fmt: str) -> str:
    """Return `fmt` if it is a known quantization format, else a one-sentence ValueError."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown quantization format {fmt!r}; valid formats are {', '.join(FORMATS)}")
    return fmt


def is_linear_weight(key: str, value: torch.Tensor) -> bool:
    """Weights of Linear layers: 2-D module weights and the 3-D stacked Q-ensemble weights
    (not LayerNorm affine weights, not the task embedding)."""
    return (key.endswith(".weight") and not key.endswith("ln.weight") and key != "_task_emb.weight"
            and value.is_floating_point() and value.ndim in (2, 3))


# ----------------------------------------------------------------------------- int8 math
def quantize_int8(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel int8: w (..., out, in) -> (q int8 same shape, scale fp32 (..., out)).
    All-zero channels get scale 0 (they dequantize to exactly 0)."""
    w = w.detach().float()
    scale = w.abs().amax(dim=-1) / INT8_QMAX
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.round(w / safe.unsqueeze(-1)).clamp_(-INT8_QMAX, INT8_QMAX).to(torch.int8)
    return q, scale


def quantize_state_dict(state: dict, fmt: str, scale_dtype: torch.dtype = torch.float32
                        ) -> tuple[dict, dict]:
    """(tensors to store, int8 scales) for a float state dict."""
    check_format(fmt)
    out, scales = {}, {}
    for k, v in state.items():
        v = v.detach().cpu()
        if fmt in ("fp16", "bf16"):
            out[k] = v.to(PRECISION_DTYPES[fmt]) if v.is_floating_point() else v.clone()
        elif is_linear_weight(k, v):
            out[k], s = quantize_int8(v)
            scales[k] = s.to(scale_dtype)
        else:
            out[k] = v.float() if v.is_floating_point() else v.clone()
    return out, scales


def quantized_checkpoint(model: WorldModel, fmt: str, scale_dtype: torch.dtype = torch.float32) -> dict:
    """Our checkpoint dict (as `save_checkpoint` writes it) holding the quantized state."""
    check_format(fmt)
    state, scales = quantize_state_dict(model.state_dict(), fmt, scale_dtype)
    meta = {"format": fmt}
    if fmt == "int8":
        meta.update(scheme=INT8_SCHEME, bits=8, qmax=INT8_QMAX, scale_dtype=str(scale_dtype).replace("torch.", ""),
                    axis="output channel (per member for stacked Q weights)", float_dtype="float32",
                    quantized_keys=sorted(scales))
    else:
        meta.update(scheme="cast", dtype=str(PRECISION_DTYPES[fmt]).replace("torch.", ""))
    obj = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "model_config": model.cfg.to_dict(),
           "model": state, "quantization": meta}
    if scales:
        obj["int8_scales"] = scales
    return obj


def save_quantized(model: WorldModel, path: str | os.PathLike, fmt: str,
                   scale_dtype: torch.dtype = torch.float32) -> int:
    """Quantize `model` to `fmt` and write it atomically; returns the file size in bytes."""
    check_format(fmt)
    check_output_path(path)
    atomic_torch_save(quantized_checkpoint(model, fmt, scale_dtype), path)
    return os.path.getsize(path)


def fake_quantize(model: WorldModel, fmt: str) -> WorldModel:
    """An fp32 copy of `model` whose weights went through `fmt` storage (no file)."""
    obj = dequantize_checkpoint(quantized_checkpoint(model, fmt))
    clone = WorldModel(model.cfg)
    clone.load_state_dict(obj["model"])
    return clone.eval()


# ----------------------------------------------------------------------------- running in precision
def to_precision(model: WorldModel, precision: str) -> WorldModel:
    """Cast a model to fp32/fp16/bf16 for running in that precision. The per-task discounts
    stay fp32 (a plain `.to(bfloat16)` would turn 0.99 into 0.98828)."""
    if precision not in PRECISION_DTYPES:
        raise ValueError(f"unknown precision {precision!r}; valid precisions are {', '.join(PRECISION_DTYPES)}")
    discounts = model.discounts.float().clone()
    model = model.to(dtype=PRECISION_DTYPES[precision])
    model.discounts = discounts.to(model.discounts.device)
    return model


class DynamicInt8Linear(nn.Module):
    """A Linear (or NormedLinear: Linear -> LayerNorm -> act) whose matmul runs in int8 with
    per-channel weights and activations quantized per call (CPU fbgemm/x86 engine)."""

    def __init__(self, linear: nn.Linear, reduce_range: bool = True):
        super().__init__()
        q, scale = quantize_int8(linear.weight)
        safe = torch.where(scale > 0, scale, torch.ones_like(scale)).double()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # quantized tensor creation is deprecated (torch 2.13)
            qw = torch._make_per_channel_quantized_tensor(q, safe, torch.zeros_like(safe, dtype=torch.long), 0)
            self._packed = torch.ops.quantized.linear_prepack(qw, linear.bias.detach().float().contiguous())
        self.in_features, self.out_features, self.reduce_range = linear.in_features, linear.out_features, reduce_range
        # The dequantized weight stays visible for code that reads `.weight` (e.g. the planner
        # folds the task embedding into the first layers and runs those in floating point).
        self.register_buffer("weight", dequantize_int8(q, scale))
        self.register_buffer("bias", linear.bias.detach().float().clone())
        normed = isinstance(linear, NormedLinear)
        self.ln = copy.deepcopy(linear.ln) if normed else None
        self.act = copy.deepcopy(linear.act) if normed else None
        self.dropout = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        y = torch.ops.quantized.linear_dynamic(x.reshape(-1, x.shape[-1]).float().contiguous(), self._packed,
                                               self.reduce_range).reshape(*lead, self.out_features)
        return self.act(self.ln(y)) if self.ln is not None else y


def int8_dynamic_available() -> bool:
    return torch.backends.quantized.engine in ("x86", "fbgemm", "onednn", "qnnpack")


def int8_dynamic_model(model: WorldModel, reduce_range: bool = True,
                       heads: tuple[str, ...] = ("_dynamics", "_reward", "_pi")) -> WorldModel:
    """CPU int8-matmul copy of an fp32 model (inference only): every Linear of `heads` becomes a
    DynamicInt8Linear with the same per-channel int8 weights as the int8 file. The encoder
    (one call per agent step, and the most outlier-sensitive input) and the Q ensemble
    (stacked baddbmm) stay dequantized fp32. `reduce_range` (7-bit activations) is the safe
    x86 default; CPUs with VNNI may pass False. Use with planner precision "fp32"."""
    if not int8_dynamic_available():
        raise RuntimeError("no quantized CPU engine is available for int8 matmuls; load the int8 file "
                           "dequantized instead")
    model = copy.deepcopy(model).float().cpu().eval()
    for seq in (model._encoder["state"] if h == "_encoder" else getattr(model, h) for h in heads):
        for i, layer in enumerate(seq):
            if isinstance(layer, nn.Linear):
                seq[i] = DynamicInt8Linear(layer, reduce_range)
    model.int8_matmul = True
    return model


def load_for_inference(path: str | os.PathLike, device: str | torch.device = "cpu",
                       int8_matmul: bool = False) -> tuple[WorldModel, str]:
    """Load a checkpoint ready to run in the precision it is stored in -> (model, planner precision).
    fp16 files: fp16 weights + fp16 autocast on CUDA; on CPU (no fp16 autocast) dequantized fp32.
    bf16 files: bf16 weights + bf16 autocast. int8 files: dequantized fp32; with `int8_matmul`
    on CPU the dynamic int8-matmul model (opt-in: its activation quantization adds error; see
    benchmarks/quantization.py for its speed and score)."""
    model, dev = load_checkpoint(path), torch.device(device)
    fmt = (model.checkpoint_info.get("quantization") or {}).get("format")
    if fmt == "bf16" or (fmt == "fp16" and dev.type == "cuda"):
        return to_precision(model, fmt).to(dev), fmt
    if fmt == "int8" and int8_matmul and dev.type == "cpu":
        return int8_dynamic_model(model), "fp32"
    return model.to(dev), "fp32"


# ----------------------------------------------------------------------------- measuring
def fixed_batch(model: WorldModel, n: int = 256, seed: int = 0) -> dict:
    """A reproducible batch: tasks cycling over the task set, obs ~ N(0, 1) on each task's real
    observation dims and 0 on the padding (as environments pad), masked actions in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    cfg = model.cfg
    task = torch.arange(n) % max(cfg.num_tasks, 1) if cfg.multitask else torch.zeros(n, dtype=torch.long)
    action = torch.rand(n, cfg.action_dim, generator=g) * 2 - 1
    obs = torch.randn(n, cfg.obs_dim, generator=g)
    if cfg.multitask:
        action = action * model._action_masks.float().cpu()[task]
        dims = torch.tensor(get_task_set(cfg.task_set).obs_dims)[task]
        obs = obs * (torch.arange(cfg.obs_dim)[None] < dims[:, None])
    return {"obs": obs, "action": action, "task": task}


@torch.no_grad()
def head_outputs(model: WorldModel, batch: dict, z_in: torch.Tensor | None = None,
                 dtype: torch.dtype | None = None) -> dict:
    """Encoder latent, dynamics next latent, decoded reward, decoded Q (all members) and the
    policy mean for a batch. Heads take `z_in` (e.g. the fp32 latent) so their errors are
    isolated from the encoder's. `dtype` casts the inputs (running in that precision)."""
    model.eval()
    dev = next(model.parameters()).device
    dtype = dtype or torch.float32
    obs, a, task = batch["obs"].to(dev, dtype), batch["action"].to(dev, dtype), batch["task"].to(dev)
    z = model.encode(obs, task)
    zi = z if z_in is None else z_in.to(dev, dtype)
    return {"encoder": z.float().cpu(), "dynamics": model.next(zi, a, task).float().cpu(),
            "reward": model.decode(model.reward(zi, a, task)).float().cpu(),
            "Q": model.decode(model.Q(zi, a, task, return_type="all")).float().cpu(),
            "pi": model.pi(zi, task)[1]["mean"].float().cpu()}


def output_errors(reference: WorldModel, model: WorldModel, batch: dict,
                  dtype: torch.dtype | None = None) -> dict:
    """{head: {"max": .., "mean": ..}} absolute differences against the fp32 reference."""
    ref = head_outputs(reference, batch)
    out = head_outputs(model, batch, z_in=ref["encoder"], dtype=dtype)
    return {k: {"max": float((out[k] - ref[k]).abs().max()), "mean": float((out[k] - ref[k]).abs().mean())}
            for k in ref}


def fp32_reference_bytes(model: WorldModel) -> int:
    """Size of our own fp32 `save_checkpoint` of the model (the ratio denominator)."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "fp32.pt"
        save_checkpoint(copy.deepcopy(model).float().cpu(), path)
        return os.path.getsize(path)


# ----------------------------------------------------------------------------- CLI
@dataclass
class QuantizeCommand:
    """Quantize a checkpoint (fp16, bf16 or calibrated int8) and compare its outputs with fp32.

    The files it writes are read only by tdmpc_lib (load_checkpoint); for the official TD-MPC2
    code use python -m tdmpc_lib.export."""
    checkpoint: str  # any checkpoint load_checkpoint reads (path, bundled or hub name)
    format: QuantFormat  # the quantized format
    output: str  # where to write the quantized checkpoint
    batch: int = 256  # size of the fixed comparison batch
    seed: int = 0  # seed of the fixed comparison batch

    def validate(self) -> None:
        """Before any model is loaded: the format, the batch and the output location."""
        check_format(self.format)
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch < 1:
            raise ValueError(f"batch must be at least 1, got {self.batch!r}")
        check_output_path(self.output)
        if os.path.exists(self.output) and os.path.exists(self.checkpoint) and os.path.samefile(
                self.output, self.checkpoint):
            raise ValueError(f"--output {self.output} is the input checkpoint; write the quantized file elsewhere")


def main(argv: list[str] | None = None) -> dict:
    from .cli import fail, parse

    args = parse(QuantizeCommand, argv, "python -m tdmpc_lib.quantize")
    lock = OutputLock(args.output, "quantized checkpoint")
    try:
        args.validate()
        lock.acquire()  # one writer per output file
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ref = load_checkpoint(args.checkpoint)
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
        out_bytes = save_quantized(ref, args.output, args.format)
        loaded = load_checkpoint(args.output)
    except (CheckpointError, ValueError) as e:
        fail(str(e))
    finally:
        lock.release()
    ref_bytes = fp32_reference_bytes(ref)
    batch = fixed_batch(ref, args.batch, args.seed)
    errors = {"stored": output_errors(ref, loaded, batch)}
    if args.format == "bf16":  # also run *in* bf16 on this CPU
        errors["computed in bf16"] = output_errors(ref, to_precision(loaded, "bf16"), batch, torch.bfloat16)
    in_bytes = os.path.getsize(args.checkpoint) if os.path.isfile(args.checkpoint) else None
    print(f"input      {args.checkpoint}: {in_bytes} bytes")
    print(f"fp32 ref   (our save_checkpoint, online + target Qs): {ref_bytes} bytes")
    print(f"{args.format:<10} {args.output}: {out_bytes} bytes = {100 * out_bytes / ref_bytes:.2f}% of fp32")
    for mode, errs in errors.items():
        print(f"max abs output difference vs fp32 ({mode}, fixed batch of {args.batch}, seed {args.seed}):")
        for head, e in errs.items():
            print(f"  {head:<9} max {e['max']:.3e}   mean {e['mean']:.3e}")
    return {"input_bytes": in_bytes, "fp32_bytes": ref_bytes, "output_bytes": out_bytes,
            "ratio": out_bytes / ref_bytes, "errors": errors}


if __name__ == "__main__":
    main()
