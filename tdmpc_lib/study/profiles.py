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

The training and evaluation knobs of a profile are the library's own configs, nested:
`train` (a TrainConfig with its DistillConfig: student size, lr, batch size, steps, d_coef...)
and `eval` (an EvalConfig: tasks, episodes, seed, protocol, policy, precision, planner); each
named profile overrides the library defaults it needs. `--set train.steps=1000` changes one
field (a dotted key); every value is checked by the one typed coercion (tdmpc_lib.typed) and
the dataclasses' validate().

A notebook parameter left at None takes its value from the profile; the runner
(`python -m tdmpc_lib.study`) writes the resolved profile to `runs/<profile>/profile.json`, so a
notebook opened later in JupyterLab sees the same values (including `--set` overrides).
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..choices import DataSource, EvalPolicy, LatentMode, ModelSize, Precision, StudyQuantFormat, TransferArm
from ..choices import check_choice, options
from ..evaluate import EvalConfig
from ..files import read_json_object
from ..planner import PlannerConfig
from ..tasks import MT30, get_task_set
from ..train.config import DistillConfig, TrainConfig
from ..typed import field_names as _field_names, field_type, from_dict, replace as _replace
from ..typed import bad_assignment, coerce

PROFILE_FILE = "profile.json"
DATA_SOURCES = options(DataSource)


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
               every student is measured there. Empty: no held-out set."""
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

    def validate(self, teacher: str = "auto") -> None:
        """Ranges, task names and mixture entries; entries the teacher collects need a teacher
        that exists before the data (a checkpoint, not one trained here on this data)."""
        check_choice("data.source", self.source, DataSource)
        if self.source == "collect" or self.heldout:
            get_task_set("mt30").resolve(self.tasks)
        for key in ("episodes", "heldout_episodes"):
            _at_least(f"data.{key}", getattr(self, key))
        entries = (self.mixture if self.source == "collect" else ()) + self.heldout
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
    teacher_size: ModelSize = 5
    teacher_steps: int = 1000
    teacher_batch_size: int = 64
    compare_teachers: tuple[str, ...] = ()  # further teachers for the teacher-size comparison
    teacher_cache: bool = True  # compute the teacher's reward targets once per dataset
    # --- the student runs: the library's TrainConfig (distill: its DistillConfig). student_size, lr,
    #     batch_size, steps, distill.d_coef (the default run, also the latent ablation's reward
    #     coefficient), distill.schedule / latent_coef / pca_samples, and every other update setting
    #     (a teacher trained here uses them too, without distillation). data, out, seed, device,
    #     threads and the evaluation schedule are set per run; its evaluations are `eval` below.
    train: TrainConfig = field(default_factory=TrainConfig)
    d_coefs: tuple[float, ...] = (0.0, 0.4)  # the sweep; 0.0 is the from-scratch baseline
    seeds: tuple[int, ...] = (1,)
    latent_modes: tuple[LatentMode, ...] = ("linear-frozen", "linear", "pca")
    # Beyond the paper: transfer arms run beside the d_coef sweep, each with every seed
    # ('value', 'policy', 'all'), their coefficients train.distill.q_coef / pi_coef / d_coef and
    # train.distill.detach_encoder (pipeline.arm_distill says which arm uses what).
    arms: tuple[TransferArm, ...] = ()
    curve_steps: int = 0  # distilled-vs-scratch runs of this length (0: the sweep's steps)
    curve_d_coef: float = 0.45
    eval_points: int = 1  # evaluations during a sweep run (the last one at its end)
    curve_eval_points: int = 5  # evaluations during a curve run
    # --- evaluation: the library's EvalConfig (tasks, episodes per task and training seed, seed,
    #     protocol, policy, precision, planner) for every student's final model, each quantized
    #     format, the teacher (the ceiling) and a uniform random policy (the floor). device: above.
    eval: EvalConfig = field(default_factory=EvalConfig)
    teacher_episodes: int = 10  # per task, for the teacher and for the random floor
    teacher_precision: Precision = "fp32"  # autocast of the teacher's planning (evaluation and 'plan' data)
    # --- notebooks 04 and 06, and where figures go (None: runs/<profile>/figures)
    quant: QuantConfig = field(default_factory=QuantConfig)
    viewer: ViewerConfig = field(default_factory=ViewerConfig)
    figures_dir: str | None = None

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
        validated (a one-line ValueError)."""
        try:
            profile = _replace(self, changes, "profile")
        except ValueError as e:
            raise ParameterError(f"profile '{self.name}': {e}") from None
        check_profile(profile)
        return profile

    def validate(self) -> None:
        """Every rule of the profile, from the dataclasses that own the fields: the training and
        evaluation configs, the data, quantization and viewer settings, and the study's own
        (sweep values finite and not repeated, known latent modes, resolvable teachers). The
        device is checked where it is used (a GPU profile can be listed on a CPU machine)."""
        dataclasses.replace(self.train, data="<the study's data>", out="runs/train").validate()
        if self.train.eval != TrainConfig().eval:  # every run of the study evaluates as `eval` says
            raise ValueError("the study evaluates its runs with the profile's 'eval'; set eval.FIELD, not "
                             "train.eval.FIELD")
        self.eval.validate()
        self.data.validate(self.teacher)
        self.quant.validate()
        self.viewer.validate()
        for t in (self.teacher, *self.compare_teachers):
            check_checkpoint_spec("teacher", t, allow_train=True)
        if self.viewer.compare not in (None, "none", "teacher"):
            check_checkpoint_spec("viewer.compare", self.viewer.compare, allow_train=False)
        for d in self.d_coefs:
            if not (math.isfinite(d) and d >= 0):
                raise ValueError(f"profile field 'd_coefs' holds {d}; coefficients are finite numbers >= 0")
        if len(set(self.d_coefs)) != len(self.d_coefs) or len(set(self.seeds)) != len(self.seeds):
            raise ValueError("profile fields 'd_coefs' and 'seeds' must not repeat a value")
        if not self.seeds:
            raise ValueError("profile field 'seeds' is empty")
        for arm in self.arms:
            check_choice("arms", arm, TransferArm)
            if arm == "reward":
                raise ValueError("arms lists the arms beyond the paper's; 'reward' is the d_coefs sweep")
            d = self.train.distill
            if (arm in ("value", "all") and d.q_coef <= 0) or (arm in ("policy", "all") and d.pi_coef <= 0):
                raise ValueError(f"arm {arm!r} needs train.distill.q_coef and/or pi_coef > 0")
        if len(set(self.arms)) != len(self.arms):
            raise ValueError("profile field 'arms' must not repeat a value")
        for mode in self.latent_modes:
            check_choice("latent_modes", mode, LatentMode)
            if mode == "none":
                raise ValueError("latent_modes lists the ablation's modes; 'none' (reward only) is always run")
        check_choice("teacher_precision", self.teacher_precision, Precision)
        _at_least("teacher_episodes", self.teacher_episodes)
        if not (0 < self.train.lr < 1):
            raise ValueError(f"profile field 'train.lr' must lie in (0, 1), got {self.train.lr}")

    @property
    def curve_length(self) -> int:
        return self.curve_steps or self.train.steps

    def label(self) -> str:
        """One line for figures: the profile and whether this is the paper's setting."""
        kind = "the paper's setting" if self.paper_setting else "a small CPU profile, NOT the paper's setting"
        return f"profile '{self.name}' ({kind})"


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
    teacher="train:tiny", teacher_size="tiny", teacher_steps=6, teacher_batch_size=16,
    compare_teachers=(), teacher_cache=True,
    train=TrainConfig(student_size="tiny", batch_size=16, steps=6,
                      distill=DistillConfig(d_coef=0.4, pca_samples=256, q_coef=1.0, pi_coef=1.0, detach_encoder=True)),
    d_coefs=(0.0, 0.4), seeds=(1,), latent_modes=("linear-frozen", "linear", "pca"), arms=("all",),
    curve_steps=0, curve_d_coef=0.4, eval_points=2, curve_eval_points=2,
    eval=EvalConfig(tasks="cartpole-balance,reacher-easy", episodes=1, seed=1, protocol="clean", policy="prior"),
    teacher_episodes=1,
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
    teacher="tdmpc-opt-mt30-1M", teacher_hub="mt30-48M", teacher_size=1, teacher_steps=0, teacher_batch_size=64,
    compare_teachers=(), teacher_cache=True,
    train=TrainConfig(student_size="tiny", lr=1e-3, batch_size=64, steps=5000,
                      # value distillation through the TD target (q_target_mix, every horizon step):
                      # the students' Q reaches the teacher's level in 5,000 updates
                      distill=DistillConfig(d_coef=0.45, pca_samples=4096, q_coef=1.0, pi_coef=1.0,
                                            q_random_actions=8, q_target_mix=1.0, detach_encoder=True)),
    d_coefs=(0.0, 0.45), seeds=(1, 2), latent_modes=("linear-frozen", "linear", "pca"),
    arms=("value", "policy", "all"),
    curve_steps=0, curve_d_coef=0.45, eval_points=1, curve_eval_points=1,
    eval=EvalConfig(tasks=MINI_TASKS, episodes=3, seed=1, protocol="clean", policy="plan", precision="fp32",
                    planner=MINI_PLANNER),
    # fp32 planning for the teacher (its evaluation and the 'plan' data): bf16 rounds differently on
    # different CPU kinds, and the collected episodes, hence every student, would follow.
    teacher_episodes=8, teacher_precision="fp32",
    quant=QuantConfig(formats=("fp16", "bf16", "int8", "paper-int8"), error_batch=256, latency_repeats=5),
    viewer=ViewerConfig(task="pendulum-swingup", policy="plan", steps=150, width=240, height=240, fps=25),
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
    train=TrainConfig(student_size=1, batch_size=256, steps=200_000,
                      distill=DistillConfig(d_coef=0.4, pca_samples=25600, q_coef=1.0, pi_coef=1.0,
                                            detach_encoder=True)),
    d_coefs=(0.0, 0.05, 0.25, 0.4, 0.55, 0.6, 0.9), seeds=(1,),
    latent_modes=("linear-frozen", "linear", "pca"), arms=("value", "policy", "all"),
    curve_steps=1_000_000, curve_d_coef=0.45, eval_points=1, curve_eval_points=5,
    eval=EvalConfig(tasks="mt30", episodes=10, seed=1, protocol="paper", policy="plan"),
    quant=QuantConfig(formats=("fp16", "bf16", "int8", "paper-int8"), error_batch=256, latency_repeats=10),
    viewer=ViewerConfig(task="walker-run", policy="plan", steps=500, width=384, height=384, fps=30),
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
