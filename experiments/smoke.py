"""Smoke: the sweep machinery end to end on the tiny config (16 cells of 40 steps, ~5 minutes on 2 CPU cores).

Optimizer × peak learning rate × warmup × seed, as in the warmup studies, at a size where every
cell takes seconds. Its numbers mean nothing about warmup; it checks that a study runs, resumes,
records and reports.

Launch:   warmup-jax sweep experiments/smoke.py && warmup-jax report experiments/smoke.py
Expected: experiments/records/smoke.jsonl (16 lines), experiments/RESULTS_smoke.md and
          experiments/figures/smoke/*.png; runs in runs/sweeps/smoke/<cell id>.
"""

from warmup_jax.sweep import Study

STUDY = Study(
    name="smoke",
    config="tiny",
    base=[
        "train.steps=40",
        "train.eval_interval=20",
        "train.checkpoint_interval=20",
        "train.tensorboard=false",
        "metrics.interval=5",
        "metrics.dense_until_step=20",
    ],
    # The seed first (it varies slowest): a sweep stopped half-way has the whole grid for seed 0.
    grid={
        "train.seed": [0, 1],
        "optim.name": ["adamw", "lion_ar"],
        "optim.lr": [1e-3, 1e-2],
        "optim.warmup_steps": [0, 10],
    },
    description="Smoke test of the sweep runner: the tiny config for 40 steps; not a result about warmup.",
)
