"""Tiny: a 2-layer, d=64 GPT for tests and smoke runs (seconds on a CPU).

Launch:   warmup-jax train --config tiny --set data.source=text_dir --set data.path=SOME_FOLDER
Expected: ~20 s on 2 CPU cores (most of it compilation).
"""

from warmup_jax.config import Config, DataConfig, ModelConfig, OptimConfig, TrainConfig


def get_config() -> Config:
    return Config(
        name="tiny",
        model=ModelConfig(n_layer=2, n_head=2, n_embd=64, block_size=64),
        data=DataConfig(source="debian", tokenizer="bpe", bpe_vocab_size=512),
        optim=OptimConfig(name="adamw", lr=3e-3, warmup_steps=0, cooldown_fraction=0.5),
        train=TrainConfig(
            steps=20,
            batch_size=8,
            seq_len=32,
            eval_interval=10,
            eval_batches=2,
            log_interval=5,
            checkpoint_interval=10,
            out_dir="runs/tiny",
            tensorboard=True,
        ),
    )
