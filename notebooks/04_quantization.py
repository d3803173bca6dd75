# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Post-training quantization
#
# **What.** Store the distilled student (every training seed) in every format and measure what each costs:
# - `fp32`: our reference file (online *and* target Q ensembles);
# - `fp16`, `bf16`: every float tensor cast (bf16 also *runs* in bf16 on the CPU);
# - `int8`: symmetric per-output-channel int8 weights (scale = max|w| / 127), dequantized on load;
# - `paper-int8`: the TD-MPC-Opt release format rebuilt from the same weights, for contrast:
#   per-tensor int8 with scale 1.0, which rounds every weight with |w| < 0.5 to zero.
#
# **Why.** The paper quantizes its student to FP16 (about 50% smaller, "performance maintained")
# and also released INT8 files. Size is only half the story: the output error of each head, the
# latency of one agent step and the score say whether the smaller file is still the same agent.
#
# **How to read it.** One row per format: file size and its fraction of fp32, the max absolute
# output error of every head against fp32 on a fixed batch (reward and Q in return units), the
# median time of one agent step (means over seeds), and the score on the profile's tasks with the
# profile's planner: interquartile mean and mean over seeds x episodes with 95% stratified-bootstrap
# CIs. Expect fp16 / bf16 / int8 to keep the score within evaluation noise and `paper-int8` to collapse.

# %% tags=["parameters"]
profile = "mini"   # smoke | mini | mini-takeover | paper
member = None      # (04 has no sweep members)
overrides = {}     # dotted profile fields, e.g. {"quant.formats": ["fp16", "int8"], "eval.episodes": 5}
study_dir = None   # the study's folder (None: runs/<profile>)

# %%
import os
os.environ.setdefault("MUJOCO_GL", "osmesa")  # offscreen MuJoCo rendering, before dm_control loads
from tdmpc_lib import study

run = study.setup("04_quantization", globals())
run

# %% [markdown]
# ## The models
# The paper quantizes its distilled student, so this does too: the profile's default distilled
# run (d_coef as the profile says) of every training seed, so each format's score has seeds and
# episodes behind it and a confidence interval.

# %%
from pathlib import Path

from tdmpc_lib.study import pipeline

quant = run.profile.quant
if quant.checkpoint is None:  # the profile's own run of every seed (trained here if missing)
    students = [pipeline.default_student(run.profile, run.study_dir, seed=s) for s in run.profile.sweep.seeds]
    models = {s["seed"]: (s["checkpoint"], Path(s["run_dir"]) / "final_eval.json") for s in students}
    for s in students:
        print(f"student seed {s['seed']}: d_coef {s['d_coef']:g}, {s['steps']} updates, score {s['normalized_score']:.2f}")
else:
    models = {0: (quant.checkpoint, None)}
    print(f"quantizing {quant.checkpoint}")

# %% [markdown]
# ## The table

# %%
import pandas as pd

from tdmpc_lib import stats
from tdmpc_lib.study import quantization

rows = []
for seed, (model_file, fp32_eval) in models.items():
    print(f"-- seed {seed}: {model_file}")
    for r in quantization.quantization_table(
            model_file, run.path(f"files/seed{seed}"), profile=run.profile, fp32_eval=fp32_eval):
        rows.append({"seed": seed, "checkpoint": model_file, **r})
quantization.write_table(rows, run.path("quantization.csv"))
run.save_json("quantization.json", rows)
table = pd.DataFrame(rows).groupby("format", sort=False)[
    ["file_bytes", "size_ratio", "err_encoder_max", "err_dynamics_max", "err_reward_max", "err_Q_max", "err_pi_max",
     "latency_ms", "normalized_score"]].mean()
tasks = list(rows[0]["returns"])
agg = stats.aggregate({fmt: stats.score_matrix({t: [x for r in rows if r["format"] == fmt for x in r["returns"][t]]
                                               for t in tasks}, tasks) for fmt in table.index})
print(stats.format_aggregate(agg))
table.assign(**{"IQM [95% CI]": [f"{agg[f]['iqm']:.1f} [{agg[f]['iqm_ci'][0]:.1f}, {agg[f]['iqm_ci'][1]:.1f}]"
                                 for f in table.index]})

# %%
for r in rows:
    for note in r["notes"]:
        print(f"note ({r['format']}, seed {r['seed']}): {note}")

# %% [markdown]
# ## Size, error, latency and score

# %%
import matplotlib.pyplot as plt

from tdmpc_lib.study import plots, results

plots.theme()
fig, _ = plots.quantization(results.Study(run.study_dir, quant=pd.DataFrame(rows)), run.profile)
fig.savefig(run.path("quantization.png"), dpi=110)
plt.show()

# %%
_ = run.finish({"checkpoints": {str(k): v[0] for k, v in models.items()},
                "rows": [{k: v for k, v in r.items() if k != "task_scores"} for r in rows],
                "aggregate": agg, "table": str(run.path("quantization.csv"))})
print(f"results written to {run.out}")
