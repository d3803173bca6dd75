"""Study profiles: every knob of the study in one typed dataclass per setting.

- `smoke`: seconds per notebook, synthetic data, tiny models; what the tests execute.
- `mini`:  the README's default; fully offline on a 2-core CPU in about half an hour: a small
           random-policy dataset collected with dm_control, a teacher trained here (or a cached
           hub checkpoint), a short d_coef sweep with a from-scratch baseline, the latent
           ablation, quantization, the figures and the viewer's video.
- `paper`: the paper's setting (317M hub teacher, the public MT30 dataset, batch 256,
           200K / 1M updates, GPU). Documented, never run by the tests.

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

PROFILE_FILE = "profile.json"
DATA_SOURCES = ("synthetic", "collect", "hub")


@dataclass(frozen=True)
class DataSpec:
    """Where the training data comes from.

    synthetic: `rows` random rows in episodes of `episode_length` (MT30-shaped, no physics).
    collect:   `episodes` per task of `tasks`, rolled out with `policy` in dm_control, episodes
               cut at `max_steps` agent steps (None: the full 500).
    hub:       the public TD-MPC2 dataset chunks (`chunks`, None = all) of the MT30 task set."""
    source: str = "collect"
    tasks: str = "mt30"
    episodes: int = 1
    max_steps: int | None = None
    policy: str = "random"
    seed: int = 1
    rows: int = 0
    episode_length: int = 0
    chunks: tuple[int, ...] | None = None


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
    rendered (at most the episode's 500); policy 'prior' (policy network) or 'plan' (MPPI)."""
    checkpoint: str | None = None
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
    # --- evaluation (EvalConfig names)
    tasks: str = "mt30"
    episodes: int = 10
    seed: int = 1
    protocol: str = "clean"
    policy: str = "plan"
    precision: str = "fp32"
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
MINI_TASKS = ("walker-stand,walker-walk,cheetah-run,reacher-easy,cartpole-balance,cartpole-swingup,"
              "cup-catch,finger-spin")

SMOKE = Profile(
    name="smoke",
    summary="seconds per notebook: synthetic data, tiny models, 2 evaluation tasks (for the tests)",
    caveat=("smoke profile: synthetic random data and tiny models trained for a few updates; the numbers "
            "only show that every step runs, they say nothing about distillation"),
    expected_cost="about 10 s per notebook execution on a 2-core CPU, under 200 MB of memory",
    device="cpu",
    data=DataSpec(source="synthetic", rows=2000, episode_length=40, seed=0),
    teacher="train:tiny", teacher_size="tiny", teacher_steps=6, teacher_batch_size=16,
    compare_teachers=(), teacher_cache=True,
    student_size="tiny", batch_size=16, steps=6, d_coef=0.4, d_coefs=(0.0, 0.4), seeds=(1,),
    latent_modes=("linear-frozen", "linear", "pca"), pca_samples=256,
    curve_steps=0, curve_d_coef=0.4, eval_points=2, curve_eval_points=2,
    tasks="cartpole-balance,reacher-easy", episodes=1, seed=1, protocol="clean", policy="prior",
    quant=QuantConfig(formats=("fp16", "bf16", "int8", "paper-int8"), error_batch=32, latency_repeats=2),
    viewer=ViewerConfig(task="cartpole-balance", steps=12, width=96, height=96, fps=10),
)

MINI = Profile(
    name="mini",
    summary=("offline on a 2-core CPU in about 30 minutes: 8 MT30 tasks, a random-policy dataset collected "
             "here, a 5M teacher trained here, 1M students, policy-prior evaluation"),
    caveat=("mini profile (2-core CPU): random-policy data on 8 tasks, a 5M teacher trained here for 800 updates, "
            "1M students for 600 updates of batch 64, policy-prior evaluation on 2 episodes per task, 1 seed. It "
            "checks the pipeline end to end but cannot rank the runs: after a few hundred offline updates on random "
            "data the policy priors saturate at the action bounds, so most runs act alike and score alike. Not "
            "comparable with the paper (317M teacher, all of MT30, 200K-1M updates of batch 256, MPPI)"),
    expected_cost=("about 16 minutes on a busy 2-core CPU with 2 workers (measured: 948 s), under 3 GB of "
                   "memory, about 370 MB on disk (checkpoints with optimizer states)"),
    device="cpu",
    data=DataSpec(source="collect", tasks=MINI_TASKS, episodes=4, policy="random", seed=1),
    teacher="auto", teacher_hub="mt30-48M", teacher_size=5, teacher_steps=800, teacher_batch_size=64,
    compare_teachers=("train:1",), teacher_cache=True,
    student_size=1, batch_size=64, steps=600, d_coef=0.4, d_coefs=(0.0, 0.1, 0.4, 0.9), seeds=(1,),
    latent_modes=("linear-frozen", "linear", "pca"), pca_samples=4096,
    curve_steps=0, curve_d_coef=0.4, eval_points=3, curve_eval_points=3,
    tasks=MINI_TASKS, episodes=2, seed=1, protocol="clean", policy="prior",
    quant=QuantConfig(formats=("fp16", "bf16", "int8", "paper-int8"), error_batch=256, latency_repeats=5),
    viewer=ViewerConfig(task="walker-stand", steps=150, width=240, height=240, fps=25),
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
    data=DataSpec(source="hub", tasks="mt30", chunks=None),
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
