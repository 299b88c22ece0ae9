"""Per-device memory of parameters + optimizer state: pure data parallel vs FSDP.

Nothing is allocated: the train state of a named config is built abstractly (``jax.eval_shape``)
and laid out with the trainer's own shardings on a mesh of N devices (fake CPU devices here, the
same code as on accelerators); the bytes of the largest device's shards are summed per part.

    python bench/bench_memory.py                                  # gpt2_124m and gpt2_350m, 8 devices
    python bench/bench_memory.py --config gpt2_124m_lion_ar --devices 16
"""

import argparse
import os
import sys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", action="append", help="named config(s) (default: gpt2_124m, gpt2_350m)")
    parser.add_argument("--devices", type=int, default=8)
    args = parser.parse_args()
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
    import jax
    import numpy as np

    from warmup_jax.config import load_config
    from warmup_jax.model import gpt
    from warmup_jax.train import mesh as mesh_lib
    from warmup_jax.train.optimizer import build_optimizer, build_schedule
    from warmup_jax.train.step import init_train_state
    from warmup_jax.train.trainer import resolve_vocab

    def per_device_bytes(tree, shardings) -> int:
        """The bytes the most loaded device holds of ``tree`` laid out by ``shardings``."""
        totals = np.zeros(len(jax.devices()), dtype=np.int64)
        for leaf, sharding in zip(jax.tree_util.tree_leaves(tree), jax.tree_util.tree_leaves(shardings)):
            shard = np.prod(sharding.shard_shape(leaf.shape), dtype=np.int64) * np.dtype(leaf.dtype).itemsize
            for device in sharding.addressable_devices:
                totals[device.id] += shard
        return int(totals.max())

    print(f"{'config':<32} {'devices':>7} {'fsdp':>4} {'params MiB':>11} {'opt state MiB':>14} {'total MiB':>10}")
    for name in args.config or ["gpt2_124m", "gpt2_350m"]:
        config = resolve_vocab(load_config(name), 50257 if load_config(name).data.tokenizer == "gpt2" else 8192)
        _, abstract_params = gpt.abstract_params(config.model)
        tx = build_optimizer(config.optim, build_schedule(config.optim, config.train.steps))
        state = jax.eval_shape(lambda p, tx=tx: init_train_state(p, tx, 0), abstract_params)
        for fsdp in sorted({1, 2, args.devices // 2, args.devices}):
            mesh = mesh_lib.make_mesh(fsdp)
            shardings = mesh_lib.state_shardings(state, mesh)
            params = per_device_bytes(state.params, shardings.params) / 2**20
            opt = per_device_bytes(state.opt_state, shardings.opt_state) / 2**20
            print(f"{name:<32} {args.devices:>7} {fsdp:>4} {params:>11.1f} {opt:>14.1f} {params + opt:>10.1f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
