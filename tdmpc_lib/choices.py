"""Every closed set of names the library accepts, declared once as a `Literal` type.

The config dataclasses annotate their fields with these types, so the command lines that tyro
generates from them list the choices in --help and refuse anything else, and the dataclasses'
`validate()` refuses the same values from the Python API, `--set KEY=VALUE` and notebook
parameters (`check_choice`). Device names are open-ended ('cuda:3') and checked by
`tdmpc_lib.device.resolve_device` instead.
"""
from __future__ import annotations

import typing
from typing import Literal

# Weight / activation dtype names (the keys of tdmpc_lib.device.DTYPES): planning precision in
# evaluation and data collection, a teacher's weights.
Precision = Literal["fp32", "bf16", "fp16"]
# Autocast of a training run's forward passes (fp16 training would need loss scaling).
TrainPrecision = Literal["fp32", "bf16"]
# How a teacher-target cache is computed ('auto': bf16 when close enough to fp32).
CachePrecision = Literal["auto", "fp32", "bf16"]
# How an evaluation acts: MPPI planning or the policy prior alone.
EvalPolicy = Literal["plan", "prior"]
# How data is collected: the two above, or uniform random actions (no model needed).
CollectPolicy = Literal["plan", "prior", "random"]
# Evaluation protocol: 'clean' (eval mode) or 'paper' (what produced the published numbers).
Protocol = Literal["clean", "paper"]
# Reward-distillation coefficient over a run.
Schedule = Literal["constant", "decrease", "increase"]
# Next-latent distillation ablation.
LatentMode = Literal["none", "linear", "linear-frozen", "pca"]
# A student run's knowledge transfer: the paper's reward distillation (d_coef; 0 = from scratch)
# or, beyond the paper, value or policy distillation alone, or all three terms together.
TransferArm = Literal["reward", "value", "policy", "all"]
# TD-MPC2 size presets (millions of parameters) and our 87K-parameter 'tiny' one.
ModelSize = Literal["tiny", 1, 5, 19, 48, 317]
# Task sets of the public datasets.
TaskSetName = Literal["mt30", "mt80"]
# Our quantized checkpoint formats (python -m tdmpc_lib.quantize).
QuantFormat = Literal["fp16", "bf16", "int8"]
# The formats the study compares: ours plus the TD-MPC-Opt release files' int8 and mixed ones.
StudyQuantFormat = Literal["fp16", "bf16", "int8", "paper-int8", "paper-mixed"]
# Layouts and dtypes of a checkpoint exported for the official TD-MPC2 code.
ExportLayout = Literal["official-new", "official-old"]
ExportDtype = Literal["fp32", "fp16"]
# The study's profiles and where its training data comes from.
ProfileName = Literal["smoke", "mini", "mini-takeover", "paper"]
DataSource = Literal["synthetic", "collect", "hub"]


def options(tp) -> tuple:
    """The values of a Literal type (also through Optional/Annotated wrappers)."""
    if typing.get_origin(tp) is typing.Annotated:
        return options(typing.get_args(tp)[0])
    if typing.get_origin(tp) is Literal:
        return typing.get_args(tp)
    out: tuple = ()
    for arg in typing.get_args(tp):
        out += options(arg)
    return out


def check_choice(name: str, value, tp) -> None:
    """A one-line ValueError naming `name`, the value and the choices, when `value` is not one
    of the Literal's values."""
    values = options(tp)
    if value in values and not isinstance(value, bool):
        return
    raise ValueError(f"{name} must be one of {', '.join(map(str, values))}, got {value!r}")
