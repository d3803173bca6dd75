"""The study: papermill notebooks (notebooks/01..06), their profiles, the runner, the figures
and the rollout viewer.

    python -m tdmpc_lib.study --profile mini            # run everything offline on a CPU
    run = tdmpc_lib.study.setup("02_distillation", globals())   # a notebook's check cell

Modules: profiles (the config tree of smoke / mini / paper, sweep members), params (notebook
parameters, one-line errors), pipeline (dataset, teachers, student runs), quantization (notebook
04's table), results (reading every run's files), plots (seaborn figures), paper (the published
numbers), viewer (the ipywidgets rollout viewer), execution (scheduling, papermill), runner
(the local pool), ray_backend (Ray tasks).
"""
from .params import NotebookRun, ParameterError, setup
from .profiles import PROFILES, Profile, get_profile, load_profile

__all__ = ["NotebookRun", "PROFILES", "ParameterError", "Profile", "get_profile", "load_profile", "setup"]
