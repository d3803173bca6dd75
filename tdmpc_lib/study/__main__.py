"""python -m tdmpc_lib.study --profile mini|smoke|paper [--only NAME] [--workers K] [--set KEY=VALUE] [--backend local|ray]
    (KEY: a profile field, nested ones dotted: train.steps, train.distill.d_coef, eval.episodes)

Executes the study's notebooks with papermill into runs/<profile>/ (see runner.py), skipping
executions whose results exist, and prints where the figures are.

Examples:
    python -m tdmpc_lib.study --profile mini --workers 2          # the whole study, offline, CPU
    python -m tdmpc_lib.study --profile mini --only 05            # redraw the figures
    python -m tdmpc_lib.study --profile mini --set teacher.checkpoint=mt30-48M --set train.steps=1000
    python -m tdmpc_lib.study --profile paper --workers 1         # on a GPU machine (hours)
    python -m tdmpc_lib.study --list --profile mini               # show the plan, run nothing
    python -m tdmpc_lib.study --profile paper --backend ray --address auto   # on a Ray cluster (notebooks/README.md)
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import tyro

from ..choices import ProfileName


@dataclass
class StudyCommand:
    """Run the study's notebooks with papermill (runs/<profile>/), skipping executions whose
    results exist."""
    profile: ProfileName = "mini"  # the profile (tdmpc_lib.study.profiles)
    # comma-separated notebooks to run (numbers or names: 01_teacher, 02_distillation, ...)
    only: str | None = None
    workers: int = 2  # parallel notebook executions for sweeps
    # override a profile field by its dotted key: train.steps=1000, teacher.checkpoint=mt30-48M,
    # train.distill.d_coef=0.9, viewer.task=walker-walk (--list prints every key)
    set: Annotated[tuple[str, ...], tyro.conf.UseAppendAction, tyro.conf.arg(metavar="KEY=VALUE")] = ()
    study_dir: str | None = None  # where executions go (default runs/<profile>)
    force: bool = False  # rerun executions even when their results exist
    # local: a process pool of --workers here; ray: one Ray task per execution
    backend: Literal["local", "ray"] = "local"
    # with --backend ray: the cluster to join (auto, ray://host:10001); default: a local Ray
    # cluster that ends with this command
    address: str | None = None
    list: bool = False  # print the executions and the profile, run nothing
    # after a finished study: copy what its numbers rest on into this folder (e.g. results/mini)
    record: str | None = None
    # with --record: further finished study folders of the same profile on other datasets
    # (--set data.seed=N --study-dir ...): every arm pooled over the datasets, with each dataset's
    # own aggregate, is recorded as aggregate_datasets.json
    pool: tuple[str, ...] = ()
    sync_notebooks: bool = False  # rewrite notebooks/*.ipynb from their py:percent scripts (no outputs) and exit


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MUJOCO_GL", "osmesa")
    from ..cli import interruptible, parse, report
    from .params import ParameterError
    from .profiles import field_names, get_profile, parse_override
    from .runner import figures_path, plan, run_study, select

    args = parse(StudyCommand, argv, "python -m tdmpc_lib.study", description=__doc__)
    if args.sync_notebooks:
        from .runner import sync_notebooks
        for name in sync_notebooks():
            print(f"rewrote notebooks/{name}")
        return 0
    try:
        profile = get_profile(args.profile)
        changes = dict(parse_override(profile, item) for item in args.set)
        profile = profile.replace(**changes) if changes else profile
        chosen = select(args.only)
    except (ParameterError, ValueError) as e:
        return report(e)
    if args.list:
        print(f"profile {profile.name}: {profile.summary}\n  caveat: {profile.caveat}\n"
              f"  expected: {profile.expected_cost}")
        for nb, exs in plan(profile).items():
            if nb in chosen:
                for ex in exs:
                    print(f"  {ex.name:<55} {ex.overrides}")
        print(f"settable fields: {', '.join(field_names())}")
        return 0
    try:
        with interruptible("the study stopped; the finished executions are kept: rerun the same command to run "
                           "the rest"):
            outcome = run_study(profile, args.study_dir, args.only, args.workers, args.force,
                                backend=args.backend, address=args.address)
    except (ParameterError, ValueError, ImportError) as e:
        return report(e)
    if outcome["failed"]:
        for f in outcome["failed"]:
            print(f"failed: {f['name']}: {f['error']}\n        see {f['notebook']}", file=sys.stderr)
        return 1
    fig_dir = figures_path(profile, Path(outcome["study_dir"]))
    print(f"\nexecuted notebooks: {outcome['study_dir']}/<notebook>/.../*.ipynb")
    if outcome["figures"]:
        print(f"figures ({len(outcome['figures'])}) in {fig_dir}:")
        for f in outcome["figures"]:
            print(f"  {f}")
    else:
        print(f"no figures yet in {fig_dir} (run 05_results)")
    if args.record:
        from .results import record_study
        try:
            written = record_study(outcome["study_dir"], args.record)
        except ValueError as e:
            return report(e)
        print(f"recorded {len(written)} files in {args.record}")
        if args.pool:
            from ..files import atomic_write_json
            from .results import pooled_aggregate
            pooled = pooled_aggregate([outcome["study_dir"], *args.pool], profile)
            atomic_write_json(Path(args.record) / "aggregate_datasets.json", pooled)
            print(f"pooled over {len(pooled['studies'])} datasets: {args.record}/aggregate_datasets.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
