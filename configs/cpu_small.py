"""CPU-small: a 5.3M-parameter GPT (4 layers, d=256, BPE-8192) on the embedded Debian corpus.

The scale at which this repository's experiments run on a 2-core CPU.

Launch:   warmup-jax train --config cpu_small
Expected: about 2.5k tokens/s on 2 CPU cores -> 2000 steps x 2048 tokens in ~30 minutes
          (plus ~1 minute of corpus and tokenizer preparation on first use).
"""

from warmup_jax.config import Config, DataConfig, ModelConfig, OptimConfig, TrainConfig


def get_config() -> Config:
    return Config(
        name="cpu_small",
        model=ModelConfig(n_layer=4, n_head=4, n_embd=256, block_size=256),
        data=DataConfig(source="debian", tokenizer="bpe", bpe_vocab_size=8192),
        optim=OptimConfig(name="adamw", lr=2e-3, warmup_steps=0, cooldown_fraction=0.5),
        train=TrainConfig(
            steps=2000,
            batch_size=16,
            seq_len=128,
            eval_interval=250,
            eval_batches=20,
            log_interval=20,
            checkpoint_interval=500,
            out_dir="runs/cpu_small",
        ),
    )
