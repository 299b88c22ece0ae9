"""Multi-host training through jax.distributed: two CPU processes equal one process.

Two processes with two CPU devices each (gloo collectives, coordinator on 127.0.0.1) train the
tiny config for a few steps, each loading only its own rows of every batch; their losses must
equal those of one process with four devices. Then each run's checkpoint is resumed by the other
process count, and the two continuations must agree.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

WORKER = textwrap.dedent(
    """
    import json, os, sys
    process_id, num_processes, devices, port, out = (int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]),
                                                     sys.argv[4], sys.argv[5])
    overrides = json.loads(sys.argv[6])
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if num_processes > 1:
        jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=num_processes,
                                   process_id=process_id)
    from warmup_jax.config import load_config
    from warmup_jax.train.trainer import Trainer
    result = Trainer(load_config("tiny", overrides + [f"train.out_dir={out}"])).run()
    print("RESULT " + json.dumps({"train": result.train_losses, "eval": result.eval_losses}))
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(tmp_path, name, num_processes, devices, overrides):
    """Start the processes of one run; ``_results`` waits for them."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    port = str(_free_port())
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    return [
        subprocess.Popen(
            [
                sys.executable,
                str(script),
                str(i),
                str(num_processes),
                str(devices),
                port,
                str(tmp_path / name),
                json.dumps(overrides),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for i in range(num_processes)
    ]


def _results(procs):
    results = []
    for proc in procs:
        output, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, output[-3000:]
        line = next(x for x in output.splitlines() if x.startswith("RESULT "))
        results.append(json.loads(line[len("RESULT ") :]))
    return results


def test_two_processes_equal_one(tiny_overrides, tmp_path):
    overrides = [o for o in tiny_overrides if not o.startswith("train.out_dir")] + [
        "train.steps=3",
        "train.eval_interval=3",
        "train.mesh_fsdp=2",
    ]
    # The two runs are independent: they run at the same time (their own ports and folders).
    two, one = _start(tmp_path, "two", 2, 2, overrides), _start(tmp_path, "one", 1, 4, overrides)
    two, (one,) = _results(two), _results(one)
    assert two[0] == two[1]  # every process sees the same global losses
    for step, loss in one["train"].items():
        assert abs(two[0]["train"][step] - loss) <= 1e-5 * abs(loss)
    assert abs(two[0]["eval"]["3"] - one["eval"]["3"]) <= 1e-5 * one["eval"]["3"]

    # Each run's checkpoint continued by the other process count: 1 process resumes the 2-process
    # run, 2 processes resume the 1-process run; both go on alike (to 5 steps, a logged change).
    more = [*overrides, "train.steps=5", "train.eval_interval=5", "train.resume=true", "train.allow_config_change=true"]
    from_two, from_one = _start(tmp_path, "two", 1, 4, more), _start(tmp_path, "one", 2, 2, more)
    (from_two,), from_one = _results(from_two), _results(from_one)
    assert sorted(from_two["train"]) == ["4", "5"]
    for step, loss in from_two["train"].items():
        assert abs(from_one[0]["train"][step] - loss) <= 1e-5 * abs(loss)
