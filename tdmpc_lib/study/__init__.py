"""The study: papermill notebooks (notebooks/01..06), their profiles, the runner, the figures
and the rollout viewer.

    python -m tdmpc_lib.study --profile mini            # run everything offline on a CPU
    run = tdmpc_lib.study.setup("02_distillation", globals())   # a notebook's check cell

Modules: profiles (smoke / mini / paper), params (notebook parameters, one-line errors),
pipeline (dataset, teachers, student runs), quantization (notebook 04's table), results
(reading every run's files), plots (seaborn figures), paper (the published numbers),
viewer (ipywidgets rollout viewer, mp4/gif), runner (papermill execution).
"""
from .params import NotebookRun, ParameterError, setup
from .profiles import PROFILES, Profile, get_profile, load_profile

__all__ = ["NotebookRun", "PROFILES", "ParameterError", "Profile", "get_profile", "load_profile", "setup"]
