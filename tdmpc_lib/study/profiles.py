"""Study profiles: every knob of the study in one typed dataclass per setting.

- `smoke`: seconds per notebook, synthetic data, tiny models; what the tests execute.
- `mini`:  the README's default; fully offline on a 2-core CPU in about half an hour: the
           released TD-MPC-Opt 1M MT30 model (bundled) is the teacher; it collects mixed-quality
           episodes on 4 MT30 tasks (random, policy prior with growing action noise, MPPI) plus
           held-out episodes; 'tiny' students (87K parameters) train from scratch and distilled
           (two d_coef values, the latent ablation), 3 seeds each; every model is evaluated with
           MPPI; the distilled students are quantized; figures with 95% CIs.
- `paper`: the paper's setting (317M hub teacher, the public MT30 dataset, batch 256,
           200K / 1M updates, GPU). Exercised on the CPU by tests/test_paper_dryrun.py with
           overrides that make it small.

A notebook parameter left at None takes its value from the profile; the runner
(`python -m tdmpc_lib.study`) writes the resolved profile to `runs/<profile>/profile.json`, so a
notebook opened later in JupyterLab sees the same values (including `--set` overrides).
"""
from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path

from ..planner import PlannerConfig

PROFILE_FILE = "profile.json"
DATA_SOURCES = ("synthetic", "collect", "hub")


@dataclass(frozen=True)
class DataSpec:
    """Where the training data comes from, and the held-out episodes no student trains on.

    synthetic: `rows` random rows in episodes of `episode_length` (MT30-shaped, no physics).
    collect:   rolled out in dm_control on `tasks`: for every entry of `mixture`, `episodes`
               episodes per task, cut at `max_steps` agent steps (None: the full 500). An entry
               is 'random', 'prior' (the teacher's policy prior, sampled), 'plan' (the teacher's
               MPPI with the profile's planner, exploration noise on) or either of the last two
               with '+NOISE' (Gaussian noise of that std added to every executed action), so the
               episodes range from random to expert, like the public MT30 replay buffers.
    hub:       the public TD-MPC2 dataset chunks (`chunks`, None = all) of the MT30 task set,
               downloaded with huggingface_hub, or `chunk_files` (paths) already on disk.
    heldout:   entries (same syntax) collected on `tasks` into <study>/heldout, `heldout_episodes`
               each per task, with seeds no training episode uses: the reward-prediction error of
               every student is measured there. Empty: no held-out set."""
    source: str = "collect"
    tasks: str = "mt30"
    episodes: int = 1
    max_steps: int | None = None
    mixture: tuple[str, ...] = ("random",)
    heldout: tuple[str, ...] = ()
    heldout_episodes: int = 1
    seed: int = 1
    rows: int = 0
    episode_length: int = 0
    chunks: tuple[int, ...] | None = None
    chunk_files: tuple[str, ...] | None = None


def parse_mixture_entry(entry: str) -> tuple[str, float]:
    """'prior+0.3' -> ('prior', 0.3); 'random' -> ('random', 0.0). A one-line ValueError otherwise."""
    policy, _, noise = entry.partition("+")
    try:
        value = float(noise) if noise else 0.0
    except ValueError:
        value = float("nan")
    if policy not in ("random", "prior", "plan") or not (value >= 0 and value < float("inf")):
        raise ValueError(f"data mixture entry {entry!r}: expected random, prior or plan, optionally with "
                         f"'+NOISE' (a number >= 0), e.g. 'prior+0.3'")
    return policy, value


@dataclass(frozen=True)
class QuantConfig:
    """Notebook 04: which model is quantized into which formats, and how it is measured.
    checkpoint None: the distilled student of the profile's default run."""
    checkpoint: str | None = None
    formats: tuple[str, ...] = ("fp16", "bf16", "int8", "paper-int8")
    error_batch: int = 256
    latency_envs: int = 1
    latency_repeats: int = 5


@dataclass(frozen=True)
class ViewerConfig:
    """Notebook 06: which checkpoint, task and seed a rollout is rendered for, and how.
    checkpoint None: the distilled student of the profile's default run; steps: agent steps
    rendered (at most the episode's 500); policy 'prior' (policy network) or 'plan' (MPPI).
    compare: the checkpoint rendered beside it in lockstep (same initial state): 'teacher' (the
    profile's teacher), a checkpoint file, bundled or hub name, or None / 'none' (no comparison)."""
    checkpoint: str | None = None
    compare: str | None = "teacher"
    task: str = "cartpole-balance"
    seed: int = 1
    policy: str = "prior"
    steps: int = 200
    width: int = 240
    height: int = 240
    camera_id: int = 0
    fps: int = 25


@dataclass(frozen=True)
class Profile:
    name: str
    summary: str
    # What the numbers of this profile can and cannot show; printed on every figure.
    caveat: str
    paper_setting: bool = False
    expected_cost: str = ""
    device: str = "cpu"
    threads: int = 0  # torch CPU threads per notebook (0: the runner divides the cores among workers)
    data: DataSpec = field(default_factory=DataSpec)
    # --- the teacher: 'auto' (teacher_hub when it is in the local cache, else a teacher_size
    #     preset trained here on the data), a hub name ('mt30-317M'), a checkpoint path, or
    #     'train:SIZE' (a SIZE preset trained here)
    teacher: str = "auto"
    teacher_hub: str = "mt30-317M"
    teacher_size: str | int = 5
    teacher_steps: int = 1000
    teacher_batch_size: int = 64
    compare_teachers: tuple[str, ...] = ()  # further teachers for the teacher-size comparison
    teacher_cache: bool = True  # compute the teacher's reward targets once per dataset
    # --- the student runs (TrainConfig / DistillConfig names)
    student_size: str | int = 1
    lr: float = 3e-4  # the students' learning rate (TD-MPC2's 3e-4; the teacher trained here uses it too)
    batch_size: int = 256
    steps: int = 200_000
    schedule: str = "constant"
    d_coef: float = 0.4  # the default run (also the latent ablation's reward coefficient)
    d_coefs: tuple[float, ...] = (0.0, 0.4)  # the sweep; 0.0 is the from-scratch baseline
    seeds: tuple[int, ...] = (1,)
    latent_modes: tuple[str, ...] = ("linear-frozen", "linear", "pca")
    latent_coef: float = 1.0
    pca_samples: int = 25600
    curve_steps: int = 0  # distilled-vs-scratch runs of this length (0: the sweep's steps)
    curve_d_coef: float = 0.45
    eval_points: int = 1  # evaluations during a sweep run (the last one at its end)
    curve_eval_points: int = 5  # evaluations during a curve run
    # --- evaluation (EvalConfig names): every student's final model, each quantized format, the
    #     teacher (the ceiling) and a uniform random policy (the floor), all on `tasks`
    tasks: str = "mt30"
    episodes: int = 10  # per task and training seed
    seed: int = 1
    protocol: str = "clean"
    policy: str = "plan"
    precision: str = "fp32"
    planner: PlannerConfig = field(default_factory=PlannerConfig)  # MPPI settings (TD-MPC2's by default)
    teacher_episodes: int = 10  # per task, for the teacher and for the random floor
    teacher_precision: str = "fp32"  # autocast of the teacher's planning (evaluation and 'plan' data)
    # --- notebooks 04 and 06, and where figures go (None: runs/<profile>/figures)
    quant: QuantConfig = field(default_factory=QuantConfig)
    viewer: ViewerConfig = field(default_factory=ViewerConfig)
    figures_dir: str | None = None

    # ------------------------------------------------------------------ helpers
    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> "Profile":
        return _build(cls, d, "profile")

    def replace(self, **changes) -> "Profile":
        """A copy with fields changed; 'quant.formats' / 'viewer.task' / 'data.episodes' style
        keys reach the nested configs. Values are type-checked (a one-line ValueError)."""
        d = self.to_dict()
        for key, value in changes.items():
            target, name = d, key
            while "." in name:
                head, name = name.split(".", 1)
                if head not in target or not isinstance(target[head], dict):
                    raise ValueError(f"unknown profile field {key!r}")
                target = target[head]
            if name not in target:
                raise ValueError(f"unknown profile field {key!r}; known: {', '.join(field_names())}")
            target[name] = value
        from .params import check_profile
        profile = Profile.from_dict(d)
        check_profile(profile)
        return profile

    @property
    def curve_length(self) -> int:
        return self.curve_steps or self.steps

    def label(self) -> str:
        """One line for figures: the profile and whether this is the paper's setting."""
        kind = "the paper's setting" if self.paper_setting else "a small CPU profile, NOT the paper's setting"
        return f"profile '{self.name}' ({kind})"


def _build(cls, d: dict, where: str):
    """Instantiate a (nested) frozen dataclass from a dict, checking names and types."""
    from .params import check_value

    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"unknown {where} field(s) {unknown}; known: {sorted(names)}")
    kwargs = {}
    for k, v in d.items():
        tp = hints[k]
        if dataclasses.is_dataclass(tp):
            kwargs[k] = v if isinstance(v, tp) else _build(tp, dict(v), f"{where}.{k}")
        else:
            kwargs[k] = check_value(f"{where}.{k}", v, tp)
    return cls(**kwargs)


def field_names(cls=None, prefix: str = "") -> list[str]:
    """Every settable profile key, nested ones as 'viewer.task'."""
    cls = cls or Profile
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out += field_names(hints[f.name], f"{prefix}{f.name}.")
        else:
            out.append(prefix + f.name)
    return out


# ---------------------------------------------------------------------------- the three profiles
# Tasks on which the released TD-MPC-Opt 1M student plans to 900+ (MPPI) but its policy prior
# alone does not (reacher-easy 0, pendulum-swingup ~50), plus the easy cartpole-balance (prior ~800):
# a student can only match the teacher there by planning with a good reward head and value.
MINI_TASKS = "cartpole-balance,reacher-easy,pendulum-swingup,finger-turn-easy"
# MPPI of the mini profile: TD-MPC2's planner with 128 samples (24 of them policy trajectories),
# 32 elites and 2 iterations instead of 512 / 64 / 6: 12x fewer model rows per agent step, so
# every student can be evaluated with planning on a CPU. The teacher still plans to 900+ with it.
MINI_PLANNER = PlannerConfig(num_samples=128, num_elites=32, iterations=2)

SMOKE = Profile(
    name="smoke",
    summary="seconds per notebook: synthetic data, tiny models, 2 evaluation tasks (for the tests)",
    caveat=("smoke profile: synthetic random data and tiny models trained for a few updates; the numbers "
            "only show that every step runs, they say nothing about distillation"),
    expected_cost="about 10 s per notebook execution on a 2-core CPU, under 200 MB of memory",
    device="cpu",
    data=DataSpec(source="synthetic", rows=2000, episode_length=40, seed=100, tasks="cartpole-balance,reacher-easy",
                  heldout=("random",), heldout_episodes=1, max_steps=20),
    teacher="train:tiny", teacher_size="tiny", teacher_steps=6, teacher_batch_size=16,
    compare_teachers=(), teacher_cache=True,
    student_size="tiny", batch_size=16, steps=6, d_coef=0.4, d_coefs=(0.0, 0.4), seeds=(1,),
    latent_modes=("linear-frozen", "linear", "pca"), pca_samples=256,
    curve_steps=0, curve_d_coef=0.4, eval_points=2, curve_eval_points=2,
    tasks="cartpole-balance,reacher-easy", episodes=1, seed=1, protocol="clean", policy="prior",
    teacher_episodes=1,
    quant=QuantConfig(formats=("fp16", "bf16", "int8", "paper-int8"), error_batch=32, latency_repeats=2),
    viewer=ViewerConfig(task="cartpole-balance", steps=12, width=96, height=96, fps=10),
)

MINI = Profile(
    name="mini",
    summary=("offline on a 2-core CPU in about 30 minutes: the released TD-MPC-Opt 1M MT30 model as teacher, "
             "mixed-quality data it collects on 4 MT30 tasks, 87K-parameter 'tiny' students (from scratch, "
             "d_coef 0.45 and 0.9, the latent ablation; 3 seeds each), MPPI evaluation, quantization"),
    caveat=("mini profile (2-core CPU): teacher = the released TD-MPC-Opt 1M student (bundled), students = the "
            "'tiny' preset (87,163 parameters, 16x smaller), 5,000 updates of batch 64 at lr 1e-3 on 96 "
            "teacher-collected episodes of 4 tasks, 3 seeds, MPPI with 128 samples / 2 iterations, 3 episodes per "
            "task and seed. Not comparable with the paper (317M teacher, all of MT30, 200K-1M updates of batch "
            "256, full MPPI, 30 tasks)"),
    expected_cost=("about 30 minutes on a 2-core CPU with 2 workers, setup included (measured 28-30 min, see "
                   "README), under 2 GB of memory, about 100 MB on disk"),
    device="cpu",
    data=DataSpec(source="collect", tasks=MINI_TASKS, episodes=3, seed=100,
                  mixture=("random", "prior", "prior+0.2", "prior+0.4", "prior+0.6", "prior+0.8", "prior+1.0",
                           "plan"),
                  heldout=("random", "prior+0.3", "plan"), heldout_episodes=1),
    teacher="tdmpc-opt-mt30-1M", teacher_hub="mt30-48M", teacher_size=1, teacher_steps=0, teacher_batch_size=64,
    compare_teachers=(), teacher_cache=True,
    student_size="tiny", lr=1e-3, batch_size=64, steps=5000, d_coef=0.45, d_coefs=(0.0, 0.45, 0.9),
    seeds=(1, 2, 3), latent_modes=("linear-frozen", "linear", "pca"), pca_samples=4096,
    curve_steps=0, curve_d_coef=0.45, eval_points=1, curve_eval_points=1,
    tasks=MINI_TASKS, episodes=3, seed=1, protocol="clean", policy="plan", precision="fp32",
    planner=MINI_PLANNER, teacher_episodes=8, teacher_precision="bf16",
    quant=QuantConfig(formats=("fp16", "bf16", "int8", "paper-int8"), error_batch=256, latency_repeats=5),
    viewer=ViewerConfig(task="pendulum-swingup", policy="plan", steps=150, width=240, height=240, fps=25),
    figures_dir="figures",
)

PAPER = Profile(
    name="paper",
    summary=("the paper's setting: 317M hub teacher, the public MT30 dataset, 1M student, batch 256, "
             "200K-update sweep and 1M-update runs, MPPI evaluation with the paper protocol, on a GPU"),
    caveat=("paper profile: 317M teacher, all of MT30, batch 256, 200K (sweep) and 1M (curve) updates, "
            "30 tasks x 10 episodes with MPPI"),
    paper_setting=True,
    expected_cost=("not measured here (no GPU on this machine). Rough estimate: the MT30 dataset is 4 chunk "
                   "files (about 345.7M rows, tens of GB on disk); the teacher-reward cache is 1.4 GB; a 1M "
                   "student at batch 256 needs under 4 GB of GPU memory and the 317M teacher about 1.3 GB "
                   "(fp32); budget of the order of hours per 200K-update run and a day per 1M-update run on "
                   "one modern GPU, plus about an hour per MT30 evaluation (300 episodes, MPPI)"),
    device="cuda",
    data=DataSpec(source="hub", tasks="mt30", chunks=None, seed=100, heldout=("prior+0.3", "plan"),
                  heldout_episodes=1),
    teacher="mt30-317M", teacher_hub="mt30-317M", teacher_size=317, teacher_steps=0, teacher_batch_size=256,
    compare_teachers=("mt30-48M",), teacher_cache=True,
    student_size=1, batch_size=256, steps=200_000, d_coef=0.4,
    d_coefs=(0.0, 0.05, 0.25, 0.4, 0.55, 0.6, 0.9), seeds=(1,),
    latent_modes=("linear-frozen", "linear", "pca"), pca_samples=25600,
    curve_steps=1_000_000, curve_d_coef=0.45, eval_points=1, curve_eval_points=5,
    tasks="mt30", episodes=10, seed=1, protocol="paper", policy="plan",
    quant=QuantConfig(formats=("fp16", "bf16", "int8", "paper-int8"), error_batch=256, latency_repeats=10),
    viewer=ViewerConfig(task="walker-run", policy="plan", steps=500, width=384, height=384, fps=30),
    figures_dir="figures/paper",
)

PROFILES = {p.name: p for p in (SMOKE, MINI, PAPER)}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}") from None


def load_profile(name: str, study_dir: str | Path | None = None) -> Profile:
    """The profile as the runner resolved it (`<study_dir>/profile.json`, with its overrides)
    when that file exists, else the built-in one."""
    base = get_profile(name)
    if study_dir is not None:
        path = Path(study_dir) / PROFILE_FILE
        if path.is_file():
            prof = Profile.from_dict(json.loads(path.read_text()))
            if prof.name != name:
                raise ValueError(f"{path} is the resolved profile {prof.name!r}, not {name!r}")
            return prof
    return base


def parse_override(profile: Profile, item: str) -> tuple[str, object]:
    """'steps=800' / 'viewer.task=walker-walk' / 'd_coefs=0,0.4' -> (key, typed value)."""
    from .params import parse_text

    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or key not in field_names():
        raise ValueError(f"--set {item!r}: expected KEY=VALUE with KEY one of {', '.join(field_names())}")
    obj, tp = profile, Profile
    for part in key.split("."):
        tp = typing.get_type_hints(type(obj))[part]
        obj = getattr(obj, part)
    return key, parse_text(text, tp, key)
