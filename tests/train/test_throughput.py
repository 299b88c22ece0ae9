"""Throughput figures: tokens/s and MFU of training steps only; the CPU peak measured once per machine."""

import json
import math
import types

import jax
import pytest

from warmup_jax.config import load_config
from warmup_jax.model import flops as flops_lib
from warmup_jax.model.flops import ThroughputMeter
from warmup_jax.train import trainer as trainer_lib
from warmup_jax.train.trainer import Trainer


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_meter_counts_step_intervals_only():
    clock = FakeClock()
    meter = ThroughputMeter(100.0, clock=clock)
    clock.now = 30.0  # start-up and compilation of the first step
    meter.step_done(10, 50.0)  # only starts the clock
    assert meter.window() is None
    for _ in range(3):
        clock.now += 2.0
        meter.step_done(10, 50.0)
    with meter.paused():  # e.g. a checkpoint save
        clock.now += 1000.0
    clock.now += 2.0
    meter.step_done(10, 50.0)
    window = meter.window()
    assert window.steps == 4 and window.seconds == 8.0
    assert window.tokens_per_s == 5.0 and window.mfu == 50.0 / 2.0 / 100.0
    meter.skip_next()  # the next interval overlaps something else (a compilation)
    clock.now += 500.0
    meter.step_done(10, 50.0)
    clock.now += 1.0
    meter.step_done(20, 50.0)
    window = meter.window()
    assert (window.steps, window.seconds, window.tokens_per_s) == (1, 1.0, 20.0)
    assert meter.window() is None  # a new window starts empty
    total = meter.total()
    assert total.steps == 5 and total.seconds == 9.0 and total.tokens_per_s == 60 / 9.0


class FakeDevice:
    """Fake time for a training run on an asynchronous device: a dispatch returns at once and the
    device runs the step when it is free; fetching a step's metrics waits for that step; saves and
    evaluations wait for the device, then take their own (long) time. Compilation is host time."""

    STEP, COMPILE, SAVE, EVAL = 1.0, 30.0, 100.0, 50.0

    def __init__(self, monkeypatch, trainer):
        self.host = 0.0  # the host's clock
        self.device_free = 0.0  # when the device has finished everything queued
        self.finish = {}  # id(metrics leaf) -> (leaf, when its step finishes)
        monkeypatch.setattr(trainer_lib, "time", types.SimpleNamespace(perf_counter=lambda: self.host))
        real_get, real_step = jax.device_get, trainer.train_step
        real_save, real_evaluate = trainer.save, trainer.evaluate

        def step(state, batch):
            new_state, metrics = real_step(state, batch)
            if not self.finish:
                self.host += self.COMPILE
            self.device_free = max(self.host, self.device_free) + self.STEP
            for leaf in jax.tree.leaves(metrics):
                self.finish[id(leaf)] = (leaf, self.device_free)
            return new_state, metrics

        def device_get(tree):
            for leaf in jax.tree.leaves(tree):
                if id(leaf) in self.finish:
                    self.host = max(self.host, self.finish[id(leaf)][1])
            return real_get(tree)

        def waiting_then(cost, fn):
            def run():
                self.host = max(self.host, self.device_free) + cost
                return fn()

            return run

        monkeypatch.setattr(jax, "device_get", device_get)
        trainer.train_step = step
        trainer.save = waiting_then(self.SAVE, real_save)
        trainer.evaluate = waiting_then(self.EVAL, real_evaluate)


def test_logged_throughput_excludes_saves_evals_and_compilation(tiny_overrides, monkeypatch):
    """Windows that contain a slow save or eval (and the first one, with the compilation) log the
    tokens/s and MFU of the training steps alone: the fake device takes exactly 1 s per step."""
    peak = 1e9
    config = load_config(
        "tiny",
        [
            *tiny_overrides,
            "train.steps=40",
            "train.log_interval=10",
            "train.checkpoint_interval=20",
            "train.eval_interval=15",
            "metrics.interval=0",
            f"train.peak_flops_per_device={peak}",
        ],
    )
    trainer = Trainer(config)
    FakeDevice(monkeypatch, trainer)
    result = trainer.run()
    with open(trainer.logger.path) as f:
        lines = [json.loads(x) for x in f]
    windows = [x for x in lines if "tokens_per_s" in x]
    assert [x["step"] for x in windows] == [10, 20, 30, 40]
    tc = config.train
    tokens_per_s = tc.batch_size * tc.seq_len / FakeDevice.STEP
    n_matmul = trainer.num_params - config.model.block_size * config.model.n_embd
    mfu = tokens_per_s * flops_lib.flops_per_token(config.model, n_matmul, tc.seq_len) / (peak * jax.device_count())
    for window in windows:
        assert math.isclose(window["tokens_per_s"], tokens_per_s, rel_tol=1e-9), window
        assert math.isclose(window["mfu"], mfu, rel_tol=1e-9), window
    assert math.isclose(result.tokens_per_second, tokens_per_s, rel_tol=1e-9)
    assert math.isclose(result.mfu, mfu, rel_tol=1e-9)
    assert sorted(result.eval_losses) == [15, 30, 40]
    assert trainer.checkpointer.latest_step() == 40
    (peak_line,) = [x for x in lines if "peak_flops_source" in x]
    assert (
        peak_line["peak_flops_per_device"] == peak and peak_line["peak_flops_source"] == "train.peak_flops_per_device"
    )


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    monkeypatch.delenv("WARMUP_JAX_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "warmup_jax" / flops_lib.PEAK_CACHE_FILE


class CountingMeasure:
    def __init__(self, value=1.5e11):
        self.calls, self.value = 0, value

    def __call__(self):
        self.calls += 1
        return self.value


def test_cpu_peak_is_measured_once_and_read_back(cache_home):
    assert flops_lib.peak_cache_path() == cache_home  # $XDG_CACHE_HOME/warmup_jax
    measure = CountingMeasure()
    first, source = flops_lib.cached_measured_peak(measure=measure)
    assert first == 1.5e11 and "measured now" in source and str(cache_home) in source
    entry = json.loads(cache_home.read_text())["machines"][flops_lib.machine_key()]
    assert entry["peak_flops"] == 1.5e11
    second, source = flops_lib.cached_measured_peak(measure=CountingMeasure(9.9e9))
    assert second == first and f"read from {cache_home}" in source  # not measured again
    assert measure.calls == 1


def test_peak_cache_keeps_other_machines(cache_home, monkeypatch):
    flops_lib.cached_measured_peak(measure=CountingMeasure(1e11))
    monkeypatch.setattr(flops_lib, "machine_key", lambda: "another cpu; 64 cores; jax 0.0; cpu")
    other, _ = flops_lib.cached_measured_peak(measure=CountingMeasure(2e11))
    assert other == 2e11
    assert len(json.loads(cache_home.read_text())["machines"]) == 2


@pytest.mark.parametrize("content", ["{not json", '{"machines": []}', '{"machines": {"KEY": {"peak_flops": -1}}}'])
def test_corrupt_peak_cache_is_measured_again(cache_home, content):
    cache_home.parent.mkdir(parents=True)
    cache_home.write_text(content.replace("KEY", flops_lib.machine_key()))
    measure = CountingMeasure()
    value, source = flops_lib.cached_measured_peak(measure=measure)
    assert value == 1.5e11 and measure.calls == 1 and "measured now" in source
    assert json.loads(cache_home.read_text())["machines"][flops_lib.machine_key()]["peak_flops"] == 1.5e11


def test_unwritable_peak_cache_falls_back_to_measuring(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.delenv("WARMUP_JAX_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # its warmup_jax/ folder cannot be created, even as root
    measure = CountingMeasure()
    for _ in range(2):
        value, source = flops_lib.cached_measured_peak(measure=measure)
        assert value == 1.5e11 and "not cached" in source
    assert measure.calls == 2
    assert list(tmp_path.iterdir()) == [blocker]


def test_cpu_run_reports_the_cached_peak(cache_home):
    value, source = flops_lib.peak_flops_per_device()
    assert jax.devices()[0].platform == "cpu"
    assert value > 0 and str(cache_home) in source and flops_lib.machine_key() in source
    again, source = flops_lib.peak_flops_per_device()
    assert again == value and "read from" in source
    assert flops_lib.peak_flops_per_device(2e12) == (2e12, "train.peak_flops_per_device")
