"""GPT-2 124M on OpenWebText: the paper's main setup (Kosson et al. 2024, after nanoGPT).

12 layers, 12 heads, d=768, context 1024, batch 480 = 12 x 40 micro-batches (~0.49M tokens), 5000
steps (~2.46B tokens, ~20 tokens per parameter), AdamW (0.9, 0.95), wd 0.1, clip 1.0, trapezoid
schedule with a 50% linear cooldown to 0, bfloat16 compute. Sweep optim.lr and optim.warmup_steps.

Data: nanoGPT's data/openwebtext/prepare.py output (uint16 train.bin / val.bin, GPT-2 BPE), in
the folder given by data.path; this repository does not download it.

Launch:   warmup-jax train --config gpt2_124m --set data.path=/data/openwebtext --set optim.warmup_steps=250
Expected: one 8xA100/H100 node, about 1.5-2 GPU-hours per run at 30-40% MFU. On this 2-core CPU
          one step takes tens of minutes: a smoke test only (--set train.steps=2 --set train.batch_size=1
          --set train.grad_accum_steps=1).
"""

from warmup_jax.config import Config, DataConfig, ModelConfig, OptimConfig, TrainConfig


def get_config() -> Config:
    return Config(
        name="gpt2_124m",
        model=ModelConfig(n_layer=12, n_head=12, n_embd=768, block_size=1024, compute_dtype="bfloat16"),
        data=DataConfig(source="nanogpt_bin", path="data/openwebtext", tokenizer="gpt2"),
        optim=OptimConfig(
            name="adamw",
            lr=6e-4,
            warmup_steps=250,
            cooldown_fraction=0.5,
            grad_clip=1.0,
            hparams=dict(b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.1),
        ),
        train=TrainConfig(
            steps=5000,
            batch_size=480,
            grad_accum_steps=40,
            seq_len=1024,
            eval_interval=1000,
            eval_batches=200,
            log_interval=10,
            checkpoint_interval=500,
            out_dir="runs/gpt2_124m",
        ),
    )
