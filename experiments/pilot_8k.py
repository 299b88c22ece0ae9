"""First pilot (stopped after 5 cells): the issue's guide model, 8k BPE, on the unigram plateau.

AdamW on a 1.2M-parameter GPT (4 layers, d=96, 8k BPE, context 128), 200 steps of a trapezoid
schedule (50 % linear cooldown), peak LR x warmup (0 or 10 %) x batch size. Its only purpose is
to choose the protocol of the comparison studies: the batch size and LR range in which the
no-warmup gap is visible. It is reported as evidence for that choice, not as a finding.

Stopped after 5 of its cells (experiments/PROTOCOL.md, "Log"): at 1.2 M parameters and ~3.5k
tokens/s here, 200 steps of 8 x 128 tokens end at a loss of 6.4-7.0, barely below the corpus's
unigram entropy under this tokenizer (6.99), and warmup only delays that progress; the runs that
would leave the plateau cost 5 minutes or more a cell. experiments/pilot.py replaced it.

Launch:   warmup-jax sweep experiments/pilot.py && warmup-jax report experiments/pilot.py
Expected: 24 cells, about 60 minutes on 2 CPU cores (B=32 cells cost four times B=8 cells).
"""

from warmup_jax.sweep import Study

BASE = [
    "model.n_layer=4",
    "model.n_head=4",
    "model.n_embd=96",
    "model.block_size=128",
    "train.seq_len=128",
    "train.steps=200",
    "train.eval_interval=0",
    "train.eval_batches=20",
    "train.log_interval=10",
    "train.checkpoint_interval=100",
    "train.tensorboard=false",
    "metrics.interval=10",
    "metrics.dense_interval=2",
    "metrics.dense_until_step=60",
]

STUDY = Study(
    name="pilot_8k",
    config="cpu_small",
    base=BASE,
    grid={
        "train.seed": [0],
        "train.batch_size": [8, 16],
        "optim.lr": [1e-3, 3e-3, 1e-2, 3e-2],
        "optim.warmup_steps": [0, 20],
        "optim.name": ["adamw"],
    },
    # The large batch last: a stopped pilot has the cheap half complete.
    cells=[
        {"train.seed": 0, "train.batch_size": 32, "optim.lr": lr, "optim.warmup_steps": w, "optim.name": "adamw"}
        for lr in (1e-3, 3e-3, 1e-2, 3e-2)
        for w in (0, 20)
    ],
    description=(
        "Pilot for the CPU-scale protocol: AdamW, 1.2M-parameter GPT, 200 steps, peak LR x warmup (0 / 10 %) "
        "x batch size (8, 16, 32 sequences of 128 tokens). Chooses the comparison's batch and LR range."
    ),
)
