"""GPT-2 350M (medium): 24 layers, 16 heads, d=1024, otherwise the gpt2_124m setup.

Launch:   warmup-jax train --config gpt2_350m --set data.path=/data/openwebtext --set train.mesh_fsdp=8
Expected: roughly 3x the compute of gpt2_124m per token (about 6 GPU-hours on H100 for 5000 steps).
          Not runnable on the 2-core CPU beyond a smoke test.
"""

import dataclasses

from warmup_jax.configs import gpt2_124m


def get_config():
    config = gpt2_124m.get_config()
    return dataclasses.replace(
        config,
        name="gpt2_350m",
        model=dataclasses.replace(config.model, n_layer=24, n_head=16, n_embd=1024),
        train=dataclasses.replace(config.train, out_dir="runs/gpt2_350m"),
    )
