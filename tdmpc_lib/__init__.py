"""tdmpc-distill: TD-MPC2 world models, MT30 environments, evaluation and distillation."""
from .checkpoint import (CheckpointError, bundled_checkpoint, download_checkpoint, load_checkpoint,
                         save_checkpoint)
from .config import ModelConfig, model_config
from .tasks import MT30, MT80, get_task_set
from .world_model import WorldModel, make_world_model

__all__ = ["CheckpointError", "ModelConfig", "MT30", "MT80", "WorldModel", "bundled_checkpoint",
           "download_checkpoint", "get_task_set", "load_checkpoint", "make_world_model", "model_config",
           "save_checkpoint"]
