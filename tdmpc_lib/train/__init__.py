"""Offline TD-MPC2 training with optional distillation from a frozen teacher.

    from tdmpc_lib.train import TrainConfig, DistillConfig, train
    summary = train(TrainConfig(data="data/mt30", out="runs/s1", student_size=1, steps=200_000,
                                distill=DistillConfig(teacher="mt30-317M.pt", d_coef=0.4, cache="auto")))

CLI: python -m tdmpc_lib.train --data DIR --student-size 1 [--teacher CKPT] [--d-coef 0.45]
     [--latent none|linear|linear-frozen|pca] --batch-size 256 --steps N --device cpu --out RUN_DIR [--resume]
"""
from .config import DistillConfig, TrainConfig, distill_coefficient
from .cache import TeacherTargetCache
from .distill import Distiller, LatentProjection, Teacher
from .losses import RunningScale
from .trainer import NonFiniteLossError, Trainer, build_teacher_cache, train
from .update import Learner

__all__ = ["DistillConfig", "TrainConfig", "Distiller", "LatentProjection", "Teacher", "TeacherTargetCache",
           "distill_coefficient", "RunningScale", "Trainer", "Learner", "train", "build_teacher_cache",
           "NonFiniteLossError"]
