"""Study profiles: every knob of the study in one typed dataclass per setting.

- `smoke`: seconds per notebook, synthetic data, tiny models; what the tests execute.
- `mini`:  the README's default; fully offline on a 2-core CPU in about half an hour: the
           released TD-MPC-Opt 1M MT30 model (bundled) is the teacher; it collects mixed-quality
           episodes on 4 MT30 tasks (random, policy prior with growing action noise, MPPI) plus
           held-out episodes; 'tiny' students (87K parameters) train from scratch, with the
           paper's reward distillation, the latent ablation and value / policy / all-three
           distillation, 2 seeds each; every model is evaluated with MPPI; the distilled students
           are quantized; figures with 95% CIs.
- `mini-takeover`: `mini` with student-then-teacher takeover episodes in every student's data
           (DataSpec.takeover).
- `paper`: the paper's setting (317M hub teacher, the public MT30 dataset, batch 256,
           200K / 1M updates, GPU). Exercised on the CPU by tests/test_paper_dryrun.py with
           overrides that make it small.

A profile is one tree of typed dataclasses: {data, teacher, train: TrainConfig, eval: EvalConfig,
sweep, quant, viewer} (TrainConfig and EvalConfig are the library's own). `--set train.steps=1000`
or a notebook's `overrides` change a field by its dotted key, checked once by the one typed
coercion (tdmpc_lib.typed) and the dataclasses' validate(). A run's config is the profile's
`train` with the study's per-run fields set (pipeline.student_config); a sweep member is the
profile with a few dotted keys changed (`sweep_members`).

The runner (`python -m tdmpc_lib.study`) writes the resolved profile to
`runs/<profile>/profile.json`, so a notebook opened later in JupyterLab sees the same values
(including `--set` overrides).
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..choices import DataSource, EvalPolicy, LatentMode, ModelSize, Precision, StudyQuantFormat, TransferArm
from ..choices import check_choice
from ..evaluate import EvalConfig
from ..files import read_json_object
from ..planner import PlannerConfig
from ..tasks import MT30, get_task_set
from ..train.config import DistillConfig, TrainConfig
from ..typed import field_names as _field_names, field_type, from_dict, replace as _replace
from ..typed import bad_assignment, coerce

PROFILE_FILE = "profile.json"


class ParameterError(ValueError):
    """A bad notebook parameter. Shown by IPython as its one-line message, no traceback."""

    def _render_traceback_(self) -> list[str]:  # IPython uses this instead of a traceback
        return [f"ParameterError: {self}"]


def check_checkpoint_spec(name: str, value: str | None, allow_train: bool) -> None:
    """A teacher/checkpoint: a hub name, an existing file, and for teachers 'auto'/'train:SIZE'."""
    from ..checkpoint import BUNDLED_CHECKPOINTS, HUB_CHECKPOINTS, is_checkpoint_name
    from ..config import PRESETS

    if value is None or is_checkpoint_name(value) or Path(value).is_file():
        return
    if allow_train and value == "auto":
        return
    if allow_train and value.startswith("train:"):
        size = value.split(":", 1)[1]
        size = int(size) if size.isdigit() else size
        if size in PRESETS:
            return
        raise ParameterError(f"parameter {name!r}: unknown preset in {value!r}; presets are "
                             f"{', '.join(map(str, PRESETS))}")
    extra = ", 'auto', 'train:SIZE'" if allow_train else ""
    raise ParameterError(f"parameter {name!r}: {value!r} is neither an existing checkpoint file nor a bundled or "
                         f"hub name ({', '.join([*BUNDLED_CHECKPOINTS, *HUB_CHECKPOINTS])}{extra})")


def check_profile(profile: Profile) -> None:
    """The profile's values make sense (Profile.validate: every nested config's own rules, tasks
    exist, choices are known, teachers resolvable): a one-line ParameterError naming the profile
    and the field otherwise."""
    try:
        profile.validate()
    except ValueError as e:
        raise ParameterError(f"profile '{profile.name}': {e}") from None


def _at_least(where: str, value, low: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{where} must be at least {low}, got {value!r}")


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
               every student is measured there. Empty: no held-out set.
    takeover:  student-then-teacher episodes added to what every student trains on (DAgger's data,
               Ross et al. 2011), into <study>/data_takeover: a round-0 student (the sweep's
               `takeover_arm` arm, seed sweep.seeds[0], trained on the data above) plans the first
               T agent steps of one episode per task for every T listed, then the teacher's MPPI
               (exploration on, like 'plan') takes over from the state the student reached. So the
               data holds the states a student drifts into, with the teacher's way back. Empty: none."""
    source: DataSource = "collect"
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
    takeover: tuple[int, ...] = ()
    takeover_arm: TransferArm = "value"

    def validate(self, teacher: str = "auto") -> None:
        """Ranges, task names and mixture entries; entries the teacher collects need a teacher
        that exists before the data (a checkpoint, not one trained here on this data)."""
        check_choice("data.source", self.source, DataSource)
        if self.source == "collect" or self.heldout:
            get_task_set("mt30").resolve(self.tasks)
        for key in ("episodes", "heldout_episodes"):
            _at_least(f"data.{key}", getattr(self, key))
        check_choice("data.takeover_arm", self.takeover_arm, TransferArm)
        length = 500 if self.max_steps is None else self.max_steps
        if self.takeover and (self.source != "collect" or not all(0 <= t <= length for t in self.takeover)):
            raise ValueError(f"data.takeover {self.takeover} needs data.source 'collect' (episodes of the same "
                             f"length) and steps in [0, {length}]")
        entries = (self.mixture if self.source == "collect" else ()) + self.heldout + (("plan",) * bool(self.takeover))
        for entry in entries:
            policy, _ = parse_mixture_entry(entry)
            if policy != "random" and (teacher == "auto" or teacher.startswith("train:")):
                raise ValueError(f"data entry {entry!r} is collected by the teacher, so 'teacher' must be a "
                                 f"checkpoint file, a bundled or a hub name, not {teacher!r} (a teacher "
                                 f"trained here needs the data first)")


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
    formats: tuple[StudyQuantFormat, ...] = ("fp16", "bf16", "int8", "paper-int8")
    error_batch: int = 256
    latency_envs: int = 1
    latency_repeats: int = 5

    def validate(self) -> None:
        for f in self.formats:
            check_choice("formats", f, StudyQuantFormat)
        for key in ("error_batch", "latency_envs", "latency_repeats"):
            _at_least(key, getattr(self, key))


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
    policy: EvalPolicy = "prior"
    steps: int = 200
    width: int = 240
    height: int = 240
    camera_id: int = 0
    fps: int = 25

    def validate(self) -> None:
        if self.task not in MT30.tasks:
            raise ValueError(f"task {self.task!r} is not an MT30 task; MT30 tasks are {', '.join(MT30.tasks)}")
        check_choice("policy", self.policy, EvalPolicy)
        for key in ("steps", "width", "height", "fps"):
            _at_least(key, getattr(self, key))
        _at_least("camera_id", self.camera_id, 0)


@dataclass(frozen=True)
class TeacherConfig:
    """The teacher of every distilled student, and its evaluation (notebook 01).

    checkpoint: 'auto' (`hub` when it is in the local Hugging Face cache, else a `size` preset
    trained here on the data), a bundled or hub name ('mt30-317M'), a checkpoint file, or
    'train:SIZE' (a SIZE preset trained here for `steps` updates of `batch_size`, with the
    profile's other training settings). compare: further teachers, each distilled once (the
    teacher-size comparison). cache: compute the teacher's targets once per dataset. episodes:
    per task, for the teacher and the random floor. precision: autocast of the teacher's planning
    (its evaluation and the 'plan' data)."""
    checkpoint: str = "auto"
    hub: str = "mt30-317M"
    size: ModelSize = 5
    steps: int = 1000
    batch_size: int = 64
    compare: tuple[str, ...] = ()
    cache: bool = True
    episodes: int = 10
    precision: Precision = "fp32"

    def validate(self) -> None:
        for spec in (self.checkpoint, *self.compare):
            check_checkpoint_spec("teacher.checkpoint" if spec == self.checkpoint else "teacher.compare", spec,
                                  allow_train=True)
        check_choice("teacher.precision", self.precision, Precision)
        _at_least("teacher.episodes", self.episodes)
        _at_least("teacher.batch_size", self.batch_size)
        _at_least("teacher.steps", self.steps, 0)


# The DistillConfig fields each arm beyond the paper takes from `sweep.transfer`; the terms' other
# settings (q_random_actions, all_steps, ...) are the profile's train.distill.
ARM_TERMS = {"value": ("q_coef", "q_target_mix", "detach_encoder"), "policy": ("pi_coef", "detach_encoder"),
             "all": ("q_coef", "pi_coef", "q_target_mix", "detach_encoder")}


@dataclass(frozen=True)
class SweepConfig:
    """The members of notebook 02 besides the profile's own run (`sweep_members`), each with
    every seed: the paper's reward distillation at each of `d_coefs` (0: from scratch, no
    teacher), the latent ablation's `latent_modes`, and the `arms` beyond the paper (value,
    policy, all), which switch on the terms of `transfer` (ARM_TERMS; value and policy without
    the reward term). curve_steps > 0: distilled (curve_d_coef) and scratch runs of that length,
    evaluated curve_eval_points times. eval_points: evaluations during a run (the last at its end)."""
    d_coefs: tuple[float, ...] = (0.0, 0.4)
    seeds: tuple[int, ...] = (1,)
    latent_modes: tuple[LatentMode, ...] = ("linear-frozen", "linear", "pca")
    arms: tuple[TransferArm, ...] = ()
    transfer: DistillConfig = field(default_factory=lambda: DistillConfig(q_coef=1.0, pi_coef=1.0,
                                                                          detach_encoder=True))
    curve_steps: int = 0
    curve_d_coef: float = 0.45
    eval_points: int = 1
    curve_eval_points: int = 5

    def validate(self, distill: DistillConfig) -> None:
        for d in self.d_coefs:
            if not (math.isfinite(d) and d >= 0):
                raise ValueError(f"sweep.d_coefs holds {d}; coefficients are finite numbers >= 0")
        for name in ("d_coefs", "seeds", "arms", "latent_modes"):
            if len(set(getattr(self, name))) != len(getattr(self, name)):
                raise ValueError(f"sweep.{name} must not repeat a value")
        if not self.seeds:
            raise ValueError("sweep.seeds is empty")
        for arm in self.arms:
            check_choice("sweep.arms", arm, TransferArm)
            if arm == "reward":
                raise ValueError("sweep.arms lists the arms beyond the paper's; 'reward' is sweep.d_coefs")
            dataclasses.replace(distill, teacher="<the teacher>", **arm_changes(self, arm)).validate()
            if not any(getattr(self.transfer, k) > 0 for k in ("q_coef", "pi_coef") if k in ARM_TERMS[arm]):
                raise ValueError(f"arm {arm!r} needs sweep.transfer.q_coef and/or pi_coef > 0")
        for mode in self.latent_modes:
            check_choice("sweep.latent_modes", mode, LatentMode)
            if mode == "none":
                raise ValueError("sweep.latent_modes lists the ablation's modes; 'none' (reward only) always runs")
        for key in ("eval_points", "curve_eval_points"):
            _at_least(f"sweep.{key}", getattr(self, key))


def arm_changes(sweep: SweepConfig, arm: str) -> dict:
    """The DistillConfig fields of an arm beyond the paper: its terms from `sweep.transfer`, and
    no reward term unless it is 'all'."""
    changes = {k: getattr(sweep.transfer, k) for k in ARM_TERMS[arm]}
    return changes if arm == "all" else {**changes, "d_coef": 0.0}


@dataclass(frozen=True)
class Profile:
    """A whole study: its data, teacher, the training and evaluation of its runs (the library's
    TrainConfig and EvalConfig), the sweep, quantization and viewer settings. `train` is the
    profile's own run (notebook 02 without a member); every sweep member is this tree with a few
    dotted keys changed (`sweep_members`)."""
    name: str
    summary: str
    # What the numbers of this profile can and cannot show; printed on every figure.
    caveat: str
    paper_setting: bool = False
    expected_cost: str = ""
    device: str = "cpu"  # of every run, evaluation and teacher
    threads: int = 0  # torch CPU threads per notebook (0: torch's default; the runner divides the cores)
    data: DataSpec = field(default_factory=DataSpec)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    # every run's data, out, device, threads and evaluation schedule are set by the study
    # (pipeline.student_config); its evaluations are `eval`; train.distill.teacher None: the
    # teacher above
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)
    viewer: ViewerConfig = field(default_factory=ViewerConfig)
    figures_dir: str | None = None  # where 05 draws (None: <study folder>/figures)

    # ------------------------------------------------------------------ helpers
    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> "Profile":
        """A profile.json: names and types checked (tdmpc_lib.typed.from_dict)."""
        return from_dict(cls, d, "profile")

    def replace(self, **changes) -> "Profile":
        """A copy with fields changed: dotted keys reach the nested configs ('train.steps',
        'eval.planner.num_samples', 'viewer.task'). Values are type-checked and the result
        validated (a one-line ParameterError)."""
        try:
            profile = _replace(self, changes, "profile")
        except ValueError as e:
            raise ParameterError(f"profile '{self.name}': {e}") from None
        check_profile(profile)
        return profile

    def validate(self) -> None:
        """Every rule of the profile, from the dataclasses that own the fields. The device is
        checked where it is used (a GPU profile can be listed on a CPU machine)."""
        distill = dataclasses.replace(self.train.distill, teacher=self.train.distill.teacher or "<the teacher>")
        for section, config in (("train", dataclasses.replace(self.train, data="<the study's data>",
                                                              out="runs/train", distill=distill)),
                                ("eval", self.eval)):
            try:  # the library's own rules, named by the field's place in the profile
                config.validate()
            except ValueError as e:
                raise ValueError(f"{section}: {e}") from None
        if self.train.eval != TrainConfig().eval:  # every run of the study evaluates as `eval` says
            raise ValueError("the study evaluates its runs with the profile's 'eval'; set eval.FIELD, not "
                             "train.eval.FIELD")
        self.data.validate(self.teacher.checkpoint)
        self.teacher.validate()
        self.sweep.validate(self.train.distill)
        self.quant.validate()
        self.viewer.validate()
        if self.train.distill.teacher is not None:  # a member's teacher other than teacher.checkpoint
            check_checkpoint_spec("train.distill.teacher", self.train.distill.teacher, allow_train=True)
        for key, spec in (("quant.checkpoint", self.quant.checkpoint), ("viewer.checkpoint", self.viewer.checkpoint)):
            check_checkpoint_spec(key, spec, allow_train=False)
        if self.viewer.compare not in (None, "none", "teacher"):
            check_checkpoint_spec("viewer.compare", self.viewer.compare, allow_train=False)
        if not (0 < self.train.lr < 1):
            raise ValueError(f"profile field 'train.lr' must lie in (0, 1), got {self.train.lr}")

    def label(self) -> str:
        """One line for figures: the profile and whether this is the paper's setting."""
        kind = "the paper's setting" if self.paper_setting else "a small CPU profile, NOT the paper's setting"
        return f"profile '{self.name}' ({kind})"


def teacher_spec(profile: Profile) -> str:
    """The teacher a profile's run distils from: train.distill.teacher (a member's other teacher)
    or the profile's teacher.checkpoint."""
    return profile.train.distill.teacher or profile.teacher.checkpoint


def distils(profile: Profile) -> bool:
    """Whether the profile's run has a distillation term on (else it is trained from scratch,
    without a teacher)."""
    d = profile.train.distill
    return d.d_coef > 0 or d.q_coef > 0 or d.pi_coef > 0 or d.latent != "none"


def _fmt(x: float) -> str:
    return format(float(x), "g")


def teacher_key(spec: str) -> str:
    """A folder-safe short name for a teacher spec."""
    if spec.startswith("train:"):
        return "train-" + spec.split(":", 1)[1]
    return Path(spec).stem.replace(" ", "_") if "/" in spec or spec.endswith(".pt") else spec


def sweep_members(profile: Profile) -> dict[str, dict[str, dict]]:
    """{notebook: {member: its dotted profile changes}}: what the runner executes besides the
    notebooks that have no members (04, 05, 06), and what a notebook's `member` parameter names."""
    p, sw = profile, profile.sweep
    teachers = list(dict.fromkeys([p.teacher.checkpoint, *p.teacher.compare]))
    # A member with another teacher distils from it (train.distill.teacher); the data stays the
    # study's (teacher.checkpoint collects it).
    out = {"01_teacher": {teacher_key(t): {} if t == p.teacher.checkpoint else {"train.distill.teacher": t}
                          for t in teachers}}
    runs: dict[str, dict] = {}
    for d in sw.d_coefs:
        for s in sw.seeds:
            runs[f"d{_fmt(d)}_s{s}"] = {"train.distill.d_coef": float(d), "train.seed": s}
    if sw.curve_steps and sw.curve_steps != p.train.steps:  # distilled vs scratch over a longer schedule
        for d in (sw.curve_d_coef, 0.0):
            runs[f"d{_fmt(d)}_s{sw.seeds[0]}_{sw.curve_steps}st"] = {
                "train.distill.d_coef": float(d), "train.seed": sw.seeds[0], "train.steps": sw.curve_steps,
                "sweep.eval_points": sw.curve_eval_points}
    for t in teachers[1:]:
        runs[f"d{_fmt(p.train.distill.d_coef)}_s{sw.seeds[0]}_teacher-{teacher_key(t)}"] = {
            "train.distill.teacher": t, "train.seed": sw.seeds[0]}
    for arm in sw.arms:
        for s in sw.seeds:
            runs[f"{arm}_s{s}"] = {**{f"train.distill.{k}": v for k, v in arm_changes(sw, arm).items()},
                                   "train.seed": s}
    for mode in sw.latent_modes:
        for s in sw.seeds:
            runs[f"{mode}_s{s}"] = {"train.distill.latent": mode, "train.seed": s}
    out["02_distillation"] = runs
    return out


def field_names(cls=None, prefix: str = "") -> list[str]:
    """Every settable profile key, nested ones as 'train.steps' / 'viewer.task'."""
    return _field_names(cls or Profile, prefix)


# ---------------------------------------------------------------------------- the three profiles
# Tasks on which the released TD-MPC-Opt 1M student plans far better (MPPI) than its policy prior
# alone (reacher-easy 0, pendulum-swingup ~50), plus the easy cartpole-balance (prior ~800):
# a student can only match the teacher there by planning with a good reward head and value.
MINI_TASKS = "cartpole-balance,reacher-easy,pendulum-swingup,finger-turn-easy"
# MPPI of the mini profile: TD-MPC2's planner with 128 samples (24 of them policy trajectories),
# 32 elites and 2 iterations instead of 512 / 64 / 6: 12x fewer model rows per agent step, so
# every student can be evaluated with planning on a CPU. The teacher averages 344-929 per task with
# it (results/mini/teacher_eval.json).
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
    teacher=TeacherConfig(checkpoint="train:tiny", size="tiny", steps=6, batch_size=16, episodes=1),
    train=TrainConfig(student_size="tiny", batch_size=16, steps=6, distill=DistillConfig(d_coef=0.4, pca_samples=256)),
    sweep=SweepConfig(d_coefs=(0.0, 0.4), seeds=(1,), arms=("all",), curve_d_coef=0.4, eval_points=2,
                      curve_eval_points=2),
    eval=EvalConfig(tasks="cartpole-balance,reacher-easy", episodes=1, seed=1, protocol="clean", policy="prior"),
    quant=QuantConfig(formats=("fp16", "bf16", "int8", "paper-int8"), error_batch=32, latency_repeats=2),
    viewer=ViewerConfig(task="cartpole-balance", steps=12, width=96, height=96, fps=10),
)

MINI = Profile(
    name="mini",
    summary=("offline on a 2-core CPU in about 30 minutes: the released TD-MPC-Opt 1M MT30 model as teacher, "
             "mixed-quality data it collects on 4 MT30 tasks, 87K-parameter 'tiny' students (from scratch, the "
             "paper's reward distillation at d_coef 0.45, value, policy and all-three distillation beyond the "
             "paper, the latent ablation; 2 seeds each), held-out diagnostics, MPPI evaluation, quantization"),
    caveat=("mini profile (2-core CPU): teacher = the released TD-MPC-Opt 1M student (bundled), students = the "
            "'tiny' preset (87,163 parameters, 16x smaller), 5,000 updates of batch 64 at lr 1e-3 on 96 "
            "teacher-collected episodes of 4 tasks, 2 seeds, MPPI with 128 samples / 2 iterations, 3 episodes per "
            "task and seed. Not comparable with the paper (317M teacher, all of MT30, 200K-1M updates of batch "
            "256, full MPPI, 30 tasks)"),
    expected_cost=("about 30 minutes on a 2-core CPU with 2 workers, setup included, under 2 GB of memory, "
                   "about 100 MB on disk"),
    device="cpu",
    data=DataSpec(source="collect", tasks=MINI_TASKS, episodes=3, seed=100,
                  mixture=("random", "prior", "prior+0.2", "prior+0.4", "prior+0.6", "prior+0.8", "prior+1.0",
                           "plan"),
                  heldout=("random", "prior+0.3", "plan"), heldout_episodes=1),
    # fp32 planning for the teacher (its evaluation and the 'plan' data): bf16 rounds differently on
    # different CPU kinds, and the collected episodes, hence every student, would follow.
    teacher=TeacherConfig(checkpoint="tdmpc-opt-mt30-1M", hub="mt30-48M", size=1, steps=0, batch_size=64,
                          episodes=8, precision="fp32"),
    train=TrainConfig(student_size="tiny", lr=1e-3, batch_size=64, steps=5000,
                      distill=DistillConfig(d_coef=0.45, pca_samples=4096, q_random_actions=8)),
    # value distillation through the TD target (q_target_mix, every horizon step): the students' Q
    # reaches the teacher's level in 5,000 updates
    sweep=SweepConfig(d_coefs=(0.0, 0.45), seeds=(1, 2), arms=("value", "policy", "all"),
                      transfer=DistillConfig(q_coef=1.0, pi_coef=1.0, q_target_mix=1.0, detach_encoder=True),
                      curve_d_coef=0.45, eval_points=1, curve_eval_points=1),
    eval=EvalConfig(tasks=MINI_TASKS, episodes=3, seed=1, protocol="clean", policy="plan", precision="fp32",
                    planner=MINI_PLANNER),
    quant=QuantConfig(formats=("fp16", "bf16", "int8", "paper-int8"), error_batch=256, latency_repeats=5),
    viewer=ViewerConfig(task="pendulum-swingup", policy="plan", steps=150, width=240, height=240, fps=25),
)

# The mini study on data with the states a student drifts into: the round-0 value student plans the
# first 10, 20, 30, 40 or 50 steps of one episode per task, then the teacher takes over, and one
# more episode is the student's own (T = 500): 24 episodes, a quarter more data. Early switches,
# because from a student's late states on cartpole-balance the pole is beyond the teacher's reach;
# the student's whole episode lets the value target (the teacher's Q) mark its own actions there.
MINI_TAKEOVER = dataclasses.replace(
    MINI, name="mini-takeover",
    summary=("the mini study with student-then-teacher takeover episodes (DAgger's data) added to every "
             "student's training data: a round-0 value student plans the first 10-50 steps (or all 500), "
             "then the teacher"),
    caveat=MINI.caveat.replace("on 96 teacher-collected episodes", "on 96 teacher-collected episodes plus 24 "
                               "student-then-teacher takeover episodes"),
    expected_cost=("about 35 minutes on a 2-core CPU with 2 workers, setup included (the round-0 student and "
                   "its takeover episodes come before the sweep), under 2 GB of memory"),
    data=dataclasses.replace(MINI.data, takeover=(10, 20, 30, 40, 50, 500)))

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
    teacher=TeacherConfig(checkpoint="mt30-317M", hub="mt30-317M", size=317, steps=0, batch_size=256,
                          compare=("mt30-48M",)),
    train=TrainConfig(student_size=1, batch_size=256, steps=200_000,
                      distill=DistillConfig(d_coef=0.4, pca_samples=25600)),
    sweep=SweepConfig(d_coefs=(0.0, 0.05, 0.25, 0.4, 0.55, 0.6, 0.9), seeds=(1,), arms=("value", "policy", "all"),
                      curve_steps=1_000_000, curve_d_coef=0.45, eval_points=1, curve_eval_points=5),
    eval=EvalConfig(tasks="mt30", episodes=10, seed=1, protocol="paper", policy="plan"),
    quant=QuantConfig(formats=("fp16", "bf16", "int8", "paper-int8"), error_batch=256, latency_repeats=10),
    viewer=ViewerConfig(task="walker-run", policy="plan", steps=500, width=384, height=384, fps=30),
)

PROFILES = {p.name: p for p in (SMOKE, MINI, MINI_TAKEOVER, PAPER)}


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
            saved = read_json_object(path, "study profile")
            try:
                prof = Profile.from_dict(saved)
            except ValueError as e:
                raise ValueError(f"study profile {path} is not a profile ({e}); delete it (the runner writes it "
                                 f"again)") from None
            if prof.name != name:
                raise ValueError(f"{path} is the resolved profile {prof.name!r}, not {name!r}")
            return prof
    return base


def parse_override(profile: Profile, item: str) -> tuple[str, object]:
    """'train.steps=800' / 'viewer.task=walker-walk' / 'd_coefs=0,0.4' -> (dotted key, typed
    value), by the one typed coercion (tdmpc_lib.typed)."""
    key, sep, text = item.partition("=")
    key = key.strip()
    try:
        tp = field_type(Profile, key) if sep else None
    except KeyError:
        tp = None
    if tp is None or dataclasses.is_dataclass(tp):
        raise ValueError(bad_assignment("--set", item, key, bool(sep), field_names())
                         .replace("--help lists", "--list prints"))
    return key, coerce(key, text, tp, text=True)
