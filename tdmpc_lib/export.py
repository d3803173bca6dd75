"""Writing world models in foreign checkpoint layouts (official tdmpc2/common/world_model.py; TD-MPC-Opt files).

- `export_official(model, path)`: the NEW official TD-MPC2 layout ({'model': state_dict} with
  `_action_masks`, int64 log-std buffers, `_Qs.params.{l}.{name}`, `_detach_Qs_params.*`,
  `_target_Qs_params.*` and the tensordict `__batch_size` / `__device` entries), so a model
  trained here loads in the official code with `load_state_dict`.
- `paper_state_dict` / `write_paper_checkpoint`: the TD-MPC-Opt release files (OLD layout,
  its repo's tdmpc2/models/): "fp16" (all float16), "int8" (every tensor quantize_per_tensor with scale
  1.0 and zero point 0, which rounds each weight to an integer and destroys the model) and
  "mixed" (float16 for keys containing "weight"/"bias", that int8 for the Q ensembles).
  Reproduced only so that benchmarks can show what the published int8 files do.
- `export_state_dict(model, layout, dtype)` and the command line
  `python -m tdmpc_lib.export --checkpoint X --output Y [--layout official-new|official-old]
  [--dtype fp32|fp16]`: any checkpoint we read, written for the official code.
"""
from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from dataclasses import dataclass

import torch

from .checkpoint import atomic_torch_save
from .choices import ExportDtype, ExportLayout, options
from .world_model import WorldModel

_Q_NAMES = ("weight", "bias", "ln.weight", "ln.bias")
PAPER_KINDS = ("fp16", "int8", "mixed")


def _q_layers(model: WorldModel, prefix: str) -> list[tuple[int, str]]:
    """(layer, name) pairs of an ensemble in parameter order: 0.weight, 0.bias, 0.ln.weight, ..."""
    sd = model.state_dict()
    out = []
    for layer in range(len(model._Qs.params)):
        for name in _Q_NAMES:
            if f"{prefix}.params.{layer}.{name}" in sd:
                out.append((layer, name))
    return out


def _head_items(sd: dict) -> list[tuple[str, torch.Tensor]]:
    """Task embedding, encoder, dynamics, reward and policy entries in the official order."""
    heads = ("_task_emb.", "_encoder.", "_dynamics.", "_reward.", "_termination.", "_pi.")
    return [(k, sd[k]) for h in heads for k in sd if k.startswith(h)]


def _stored_bound(value: float) -> torch.Tensor:
    """Official buffers are torch.tensor(cfg value): int64 for the integer defaults."""
    return torch.tensor(int(value)) if float(value).is_integer() else torch.tensor(float(value))


def official_state_dict(model: WorldModel) -> OrderedDict:
    """Our model -> the NEW official TD-MPC2 state dict (80 entries for MT30-1M), fp32."""
    sd = {k: v.detach().cpu().float().clone() for k, v in model.state_dict().items()}
    cfg, out = model.cfg, OrderedDict()
    if "_action_masks" in sd:
        out["_action_masks"] = sd["_action_masks"]
    out["log_std_min"] = _stored_bound(cfg.log_std_min)
    out["log_std_dif"] = _stored_bound(cfg.log_std_max - cfg.log_std_min)
    out.update(_head_items(sd))
    online = _q_layers(model, "_Qs")
    for official, ours in (("_Qs.params.", "_Qs.params."), ("_detach_Qs_params.", "_Qs.params."),
                           ("_target_Qs_params.", "_target_Qs.params.")):
        for layer, name in online:
            out[f"{official}{layer}.{name}"] = sd[f"{ours}{layer}.{name}"].clone()
        out[f"{official}__batch_size"] = torch.Size([cfg.num_q])
        out[f"{official}__device"] = None
    return out


def export_official(model: WorldModel, path: str | os.PathLike) -> None:
    """Write {'model': official_state_dict(model)} atomically (torch.save, weights_only-loadable)."""
    atomic_torch_save({"model": official_state_dict(model)}, path)


def _old_layout(model: WorldModel) -> OrderedDict:
    """OLD layout (fork / TD-MPC2 release): heads + flat `_Qs.params.{j}`, `_target_Qs.params.{j}`,
    no buffers; fp32."""
    sd = {k: v.detach().cpu().float() for k, v in model.state_dict().items()}
    out = OrderedDict(_head_items(sd))
    for prefix in ("_Qs", "_target_Qs"):
        for j, (layer, name) in enumerate(_q_layers(model, "_Qs")):
            out[f"{prefix}.params.{j}"] = sd[f"{prefix}.params.{layer}.{name}"]
    return out


def _paper_int8(t: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # quantized tensor creation is deprecated (torch 2.13)
        return torch.quantize_per_tensor(t.float(), scale=1.0, zero_point=0, dtype=torch.qint8)


def paper_state_dict(model: WorldModel, kind: str = "int8") -> dict:
    """The TD-MPC-Opt release state dict of `model` (TD-MPC-Opt tdmpc2/models/): kind 'fp16', 'int8', 'mixed'."""
    if kind not in PAPER_KINDS:
        raise ValueError(f"unknown TD-MPC-Opt file kind {kind!r}; valid kinds are {', '.join(PAPER_KINDS)}")
    old = _old_layout(model)
    if kind == "fp16":
        return OrderedDict((k, v.half()) for k, v in old.items())
    if kind == "int8":
        return {k: _paper_int8(v) for k, v in old.items()}
    return {k: v.half() if ("weight" in k or "bias" in k) else _paper_int8(v) for k, v in old.items()}


def write_paper_checkpoint(model: WorldModel, path: str | os.PathLike, kind: str = "int8") -> int:
    """Write {'model': paper_state_dict(model, kind)}; returns the file size in bytes."""
    atomic_torch_save({"model": paper_state_dict(model, kind)}, path)
    return os.path.getsize(path)


# ---------------------------------------------------------------------------- command line
LAYOUTS = options(ExportLayout)
EXPORT_DTYPES = options(ExportDtype)


def export_state_dict(model: WorldModel, layout: str = "official-new", dtype: str = "fp32") -> OrderedDict:
    """The state dict the official TD-MPC2 code loads strictly: 'official-new' (the current
    official layout, 80 entries for MT30-1M) or 'official-old' (the layout of the released
    checkpoints and the TD-MPC-Opt fork), float tensors in fp32 or fp16."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if dtype not in EXPORT_DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(EXPORT_DTYPES)}")
    sd = official_state_dict(model) if layout == "official-new" else _old_layout(model)
    if dtype == "fp16":  # floats only: the log-std bounds, masks and tensordict entries keep their types
        sd = OrderedDict((k, v.half() if isinstance(v, torch.Tensor) and v.is_floating_point()
                          and k not in ("log_std_min", "log_std_dif") else v) for k, v in sd.items())
    return sd


@dataclass
class ExportCommand:
    """Write any checkpoint tdmpc_lib reads (ours, quantized, official, TD-MPC-Opt) as a file the
    official TD-MPC2 code loads with load_state_dict(strict=True).

    Our own quantized formats (python -m tdmpc_lib.quantize) are read only by tdmpc_lib: export
    them with this command to share them."""
    checkpoint: str  # checkpoint path, bundled name or hub name
    output: str  # the .pt file to write ({'model': state_dict})
    layout: ExportLayout = "official-new"  # official-new: current TD-MPC2 code; official-old: released files / TD-MPC-Opt fork
    dtype: ExportDtype = "fp32"  # float tensors in fp32 or fp16

    def validate(self) -> None:
        """Before the checkpoint is read: the choices and the output location."""
        from .choices import check_choice
        from .files import check_output_path
        check_choice("layout", self.layout, ExportLayout)
        check_choice("dtype", self.dtype, ExportDtype)
        check_output_path(self.output)
        if os.path.exists(self.output) and os.path.exists(self.checkpoint) and os.path.samefile(self.output,
                                                                                                 self.checkpoint):
            raise ValueError(f"--output {self.output} is the input checkpoint; write the export elsewhere")


def main(argv: list[str] | None = None) -> int:
    """python -m tdmpc_lib.export --checkpoint X --output Y [--layout official-new|official-old] [--dtype fp32|fp16]"""
    from .checkpoint import CheckpointError, load_checkpoint
    from .cli import parse, report

    args = parse(ExportCommand, argv, "python -m tdmpc_lib.export")
    try:
        args.validate()
        model = load_checkpoint(args.checkpoint)
        sd = export_state_dict(model, args.layout, args.dtype)
        atomic_torch_save({"model": sd}, args.output)
    except (CheckpointError, ValueError) as e:
        return report(e)
    print(f"{args.output}: {len(sd)} entries, layout {args.layout}, {args.dtype}, {os.path.getsize(args.output):,} "
          f"bytes (loads with the official TD-MPC2 code, strict=True)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
