"""Training throughput of a named config on this machine: tokens/s and MFU.

    python bench/bench_train.py --config cpu_small --steps 60

Runs the real trainer (data from the config's source, no evaluation, no checkpoints except the
final one, in a temporary folder) and reports the steady-state throughput: the first logging
window, which includes compilation, is dropped. MFU is relative to the peak the trainer uses: a
data-sheet figure on accelerators, the measured float32 matmul rate on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

import numpy as np

from warmup_jax.config import load_config
from warmup_jax.train.trainer import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="cpu_small")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--window", type=int, default=10, help="steps per throughput window")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        config = load_config(
            args.config,
            [
                f"train.steps={args.steps}",
                "train.eval_interval=0",
                f"train.log_interval={args.window}",
                "train.checkpoint_interval=0",
                f"train.out_dir={out}",
                "train.tensorboard=false",
                *args.overrides,
            ],
        )
        trainer = Trainer(config)
        trainer.run()
        with open(os.path.join(out, "metrics.jsonl")) as f:
            windows = [json.loads(line) for line in f if "tokens_per_s" in line]
    steady = windows[1:] or windows
    tps = np.array([w["tokens_per_s"] for w in steady])
    mfu = np.array([w["mfu"] for w in steady])
    print(
        f"config={args.config} params={trainer.num_params / 1e6:.2f}M batch={config.train.batch_size}x"
        f"{config.train.seq_len} steps={args.steps} windows={len(steady)}"
    )
    print(
        f"tokens/s median {np.median(tps):,.0f} (min {tps.min():,.0f}, max {tps.max():,.0f}); "
        f"MFU median {100 * np.median(mfu):.1f}%"
    )


if __name__ == "__main__":
    main()
