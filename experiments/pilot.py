"""Pilot: where does AdamW without warmup lose at CPU scale? (the search for the protocol)

AdamW on a 0.34M-parameter GPT (4 layers, d=64, BPE-2048, context 128), 300 steps of a trapezoid
schedule (50 % linear cooldown), peak LR x warmup (0 or 10 %) x batch size. Its only purpose is to
choose the protocol of the comparison (experiments/compare.py): the batch size and LR range in
which the no-warmup gap is visible. It is reported as the evidence for that choice, not as a
finding. It replaced experiments/pilot_8k.py, whose model stayed on the unigram plateau.

Launch:   warmup-jax sweep experiments/pilot.py && python experiments/results.py
Expected: 24 cells, about 45 minutes on 2 CPU cores (a B=32 cell costs ~3x a B=8 one).
"""

from warmup_jax.sweep import Study

BASE = [
    "data.bpe_vocab_size=2048",
    "model.n_layer=4",
    "model.n_head=4",
    "model.n_embd=64",
    "model.block_size=128",
    "train.seq_len=128",
    "train.steps=300",
    "train.eval_interval=0",
    "train.eval_batches=40",
    "train.log_interval=5",
    "train.checkpoint_interval=100",
    "train.tensorboard=false",
    "metrics.interval=10",
    "metrics.dense_interval=1",
    "metrics.dense_until_step=40",
]
LRS = (2e-3, 6e-3, 2e-2, 6e-2)
WARMUPS = (0, 30)

STUDY = Study(
    name="pilot",
    config="cpu_small",
    base=BASE,
    grid={
        "train.seed": [0],
        "train.batch_size": [8, 16],
        "optim.lr": list(LRS),
        "optim.warmup_steps": list(WARMUPS),
        "optim.name": ["adamw"],
    },
    # The large batch last: a stopped pilot has the cheap half complete.
    cells=[
        {"train.seed": 0, "train.batch_size": 32, "optim.lr": lr, "optim.warmup_steps": w, "optim.name": "adamw"}
        for lr in LRS
        for w in WARMUPS
    ],
    description=(
        "Pilot for the CPU-scale protocol: AdamW, 0.34M-parameter GPT (BPE-2048), 300 steps, peak LR x warmup "
        "(0 / 10 %) x batch size (8, 16, 32 sequences of 128 tokens). Chooses the comparison's batch and LR range."
    ),
)
