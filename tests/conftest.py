"""Test set-up: 8 fake CPU devices, so meshes and sharding are exercised without accelerators.

XLA reads XLA_FLAGS when jax initialises its backends, so this must run before jax is imported.
"""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
