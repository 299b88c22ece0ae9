"""Quick start (the default of `warmup-jax train`): CPU-small for 150 steps.

Launch:   warmup-jax train            (same as: warmup-jax train --config quickstart)
Expected: ~30 s to fetch the Debian corpus and train its tokenizer on first use, then 2-5
          minutes of training on 2 CPU cores (3:56 wall in all on one 2-vCPU VM; 5:35 including
          `pip install -e .` on a ~2x slower one, 1,160 tokens/s, update metrics on by default);
          validation loss falls from ~9.0 (ln 8192) to ~6.4-6.6.
"""

import dataclasses

from warmup_jax.configs import cpu_small


def get_config():
    config = cpu_small.get_config()
    return dataclasses.replace(
        config,
        name="quickstart",
        train=dataclasses.replace(
            config.train,
            steps=150,
            eval_interval=75,
            eval_batches=10,
            log_interval=10,
            checkpoint_interval=0,
            out_dir="runs/quickstart",
        ),
    )
