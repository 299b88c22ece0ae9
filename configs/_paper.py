"""The paper's GPT-2 124M setup (Kosson et al. 2024, after nanoGPT), shared by the ``gpt2_124m*`` configs.

12 layers, 12 heads, d=768, context 1024, batch 480 sequences (~0.49M tokens) as 40 micro-batches
of 12, 5000 steps (~2.46B tokens, ~20 tokens per parameter), global-norm clipping at 1.0, a
trapezoid schedule with a 50 % linear cooldown to 0, bfloat16 compute, float32 parameters and
optimizer state. The blocks run under ``lax.scan`` (``model.scan_layers``): the same model, and its
step with the per-layer update metrics compiles in half the time of the looped one. Data:
nanoGPT-style OpenWebText ``train.bin`` / ``val.bin`` (uint16 GPT-2 token ids) in ``data.path``;
this repository never downloads them.

Each config fixes the optimizer (its recipe and hyperparameters, ``OPTIMIZERS``) and a starting
learning rate; the paper sweeps the learning rate with and without warmup. The grids these
configs are meant for (factor-2 steps; the paper's own grid is not published):

- AdamW: 6e-4, 1.2e-3, 2.4e-3, 4.8e-3, 9.6e-3; warmup 0, 100, 250, 500, 1000 steps (0-20 %).
- The Lion family: 7.5e-5, 1.5e-4, 3e-4, 6e-4, 1.2e-3, 2.4e-3; warmup 0 and 250 steps. Lion-type
  updates have unit-sized coordinates, so the grid sits ~4x lower: with weight decay 1.0, the
  equilibrium angular update of a Lion weight at 1.5e-4 equals AdamW's at 6e-4 with 0.1.

Compute: about 0.86 GFLOP per training token (6 N + 12 L T d), 2.1e18 FLOP a run. At 40 % MFU
that is ~1.5 h on one H100/H200, ~12 min on 8 of them, ~20 min on a TPU v4-32 slice (16 chips);
the first log lines print the measured MFU.
"""

import dataclasses

from warmup_jax.config import Config, DataConfig, ModelConfig, OptimConfig, TrainConfig


@dataclasses.dataclass(frozen=True)
class PaperOptimizer:
    name: str  # the recipe (`warmup-jax configs` lists them)
    lr: float  # the config's peak learning rate
    hparams: dict


OPTIMIZERS = {
    "adamw": PaperOptimizer("adamw", 6e-4, dict(b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.1)),
    "lion_a": PaperOptimizer("lion_a", 3e-4, dict(b1=0.9, b2=0.99, weight_decay=1.0)),
    "lion_ar": PaperOptimizer("lion_ar", 3e-4, dict(b1=0.9, b2=0.99, weight_decay=1.0)),
    "lion_ar_rrc": PaperOptimizer("lion_ar_rrc", 3e-4, dict(b1=0.9, b2=0.99, weight_decay=1.0)),
    "lion_ar_fast_momentum": PaperOptimizer(
        "lion_ar_fast_momentum",
        3e-4,
        dict(beta=0.98, nesterov=True, inverse_bias_correction="linear", weight_decay=1.0),
    ),
    "lion_a_fast_momentum": PaperOptimizer(
        "lion_a_fast_momentum",
        3e-4,
        dict(beta=0.98, nesterov=True, inverse_bias_correction="linear", weight_decay=1.0),
    ),
    # Lion's direction is sign(b1 m + (1 - b1) g): b1 = 0 is the sign of the current gradient alone.
    "lion_ar_no_momentum": PaperOptimizer("lion_ar", 3e-4, dict(b1=0.0, b2=0.0, weight_decay=1.0)),
}


def paper_config(suffix: str) -> Config:
    """The 124M config with the optimizer ``OPTIMIZERS[suffix]``, no warmup and its starting LR."""
    opt = OPTIMIZERS[suffix]
    name = "gpt2_124m" if suffix == "adamw" else f"gpt2_124m_{suffix}"
    return Config(
        name=name,
        model=ModelConfig(
            n_layer=12, n_head=12, n_embd=768, block_size=1024, compute_dtype="bfloat16", scan_layers=True
        ),
        data=DataConfig(source="nanogpt_bin", path="data/openwebtext", tokenizer="gpt2"),
        optim=OptimConfig(
            name=opt.name,
            lr=opt.lr,
            warmup_steps=0,
            cooldown_fraction=0.5,
            grad_clip=1.0,
            hparams=dict(opt.hparams),
        ),
        train=TrainConfig(
            steps=5000,
            batch_size=480,
            grad_accum_steps=40,
            seq_len=1024,
            eval_interval=500,
            eval_batches=200,
            log_interval=10,
            checkpoint_interval=500,
            out_dir=f"runs/{name}",
        ),
    )
