"""Sequence-length warmup through the trainer, and the token-based learning-rate schedule."""

import json

import numpy as np

from warmup_jax.config import OptimConfig, load_config
from warmup_jax.train.optimizer import build_schedule
from warmup_jax.train.trainer import Trainer


def test_trainer_ramps_sequence_length(tiny_overrides, tmp_path):
    config = load_config(
        "tiny",
        [
            *tiny_overrides,
            "train.steps=4",
            "train.eval_interval=0",
            "train.log_interval=1",
            "data.seq_len_warmup_steps=2",
            "data.seq_len_min=8",
            "data.seq_len_bucket=8",
            "optim.schedule_unit=tokens",
        ],
    )
    result = Trainer(config).run()
    assert result.final_step == 4
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    lengths = [x["seq_len"] for x in lines if "seq_len" in x]
    assert lengths == [8, 16, 32, 32]  # 8 + 24 * t/2 rounded down to multiples of 8; full length after


def test_token_based_schedule_decays_by_tokens_seen():
    optim = OptimConfig(lr=1.0, warmup_steps=2, cooldown_fraction=0.5, schedule_unit="tokens")
    per_step = lambda s: 8 if s < 5 else 32  # noqa: E731  (short sequences first)
    by_tokens = build_schedule(optim, 10, tokens_per_step=per_step)
    by_steps = build_schedule(OptimConfig(lr=1.0, warmup_steps=2, cooldown_fraction=0.5), 10)
    lr_tokens = np.array([float(by_tokens(s)) for s in range(11)])
    lr_steps = np.array([float(by_steps(s)) for s in range(11)])
    np.testing.assert_allclose(lr_tokens[:2], lr_steps[:2])  # warmup stays step-based
    # 5 short steps are only 40 of 200 tokens: the cooldown starts later than step 5 ...
    assert lr_tokens[6] == 1.0 and lr_steps[6] < 1.0
    # ... and both reach the end value at the last step.
    assert lr_tokens[10] == lr_steps[10] == 0.0
