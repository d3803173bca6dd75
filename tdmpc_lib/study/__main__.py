"""python -m tdmpc_lib.study --profile mini|smoke|paper [--only NAME] [--workers K] [--set KEY=VALUE] [--backend local|ray]

Executes the study's notebooks with papermill into runs/<profile>/ (see runner.py), skipping
executions whose results exist, and prints where the figures are.

Examples:
    python -m tdmpc_lib.study --profile mini --workers 2          # the whole study, offline, CPU
    python -m tdmpc_lib.study --profile mini --only 05            # redraw the figures
    python -m tdmpc_lib.study --profile mini --set teacher=mt30-48M --set steps=1000
    python -m tdmpc_lib.study --profile paper --workers 1         # on a GPU machine (hours)
    python -m tdmpc_lib.study --list --profile mini               # show the plan, run nothing
    python -m tdmpc_lib.study --profile paper --backend ray --address auto   # on a Ray cluster (notebooks/README.md)
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MUJOCO_GL", "osmesa")
    from .params import ParameterError
    from .profiles import PROFILES, field_names, get_profile, parse_override
    from .runner import ORDER, figures_path, plan, run_study, select

    p = argparse.ArgumentParser(prog="python -m tdmpc_lib.study", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n", 2)[2])
    p.add_argument("--profile", default="mini", choices=list(PROFILES), help="smoke | mini | paper (default mini)")
    p.add_argument("--only", help=f"comma-separated notebooks to run (numbers or names: {', '.join(ORDER)})")
    p.add_argument("--workers", type=int, default=2, help="parallel notebook executions for sweeps (default 2)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a profile field, e.g. steps=1000, teacher=mt30-48M, viewer.task=walker-walk")
    p.add_argument("--study-dir", help="where executions go (default runs/<profile>)")
    p.add_argument("--force", action="store_true", help="rerun executions even when their results exist")
    p.add_argument("--backend", default="local", choices=("local", "ray"),
                   help="local: a process pool of --workers here (default); ray: one Ray task per execution")
    p.add_argument("--address", help="with --backend ray: the cluster to join (auto, ray://host:10001); "
                   "default: start a local Ray cluster that ends with this command")
    p.add_argument("--list", action="store_true", help="print the executions and the profile, run nothing")
    p.add_argument("--sync-notebooks", action="store_true",
                   help="rewrite notebooks/*.ipynb from their py:percent scripts (no outputs) and exit")
    args = p.parse_args(argv)
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
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.list:
        print(f"profile {profile.name}: {profile.summary}\n  caveat: {profile.caveat}\n"
              f"  expected: {profile.expected_cost}")
        for nb, exs in plan(profile).items():
            if nb in chosen:
                for ex in exs:
                    print(f"  {ex.name:<55} {ex.parameters}")
        print(f"settable fields: {', '.join(field_names())}")
        return 0
    try:
        report = run_study(profile, args.study_dir, args.only, args.workers, args.force,
                           backend=args.backend, address=args.address)
    except (ParameterError, ValueError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if report["failed"]:
        for f in report["failed"]:
            print(f"failed: {f['name']}: {f['error']}\n        see {f['notebook']}", file=sys.stderr)
        return 1
    fig_dir = figures_path(profile, Path(report["study_dir"]))
    print(f"\nexecuted notebooks: {report['study_dir']}/<notebook>/.../*.ipynb")
    if report["figures"]:
        print(f"figures ({len(report['figures'])}) in {fig_dir}:")
        for f in report["figures"]:
            print(f"  {f}")
    else:
        print(f"no figures yet in {fig_dir} (run 05_results)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
