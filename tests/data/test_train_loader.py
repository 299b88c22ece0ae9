import json

import numpy as np
import pytest

from warmup_jax.data import (
    DataConfig,
    SeqLenWarmup,
    TokenWindows,
    TrainLoader,
    eval_batches,
    seq_len_at,
    seq_len_buckets,
    tokens_seen,
)

TOKENS = np.arange(20_000, dtype=np.uint16)  # token value == position: windows are easy to check
L = 16


def loader(seed=0, batch=8, process_index=0, process_count=1, warmup=None, tokens=TOKENS, seq_len=L):
    return TrainLoader(
        tokens,
        seq_len=seq_len,
        global_batch_size=batch,
        seed=seed,
        process_index=process_index,
        process_count=process_count,
        seq_len_warmup=warmup,
    )


def take(it, n):
    return [next(it) for _ in range(n)]


def test_windows():
    windows = TokenWindows(TOKENS, L)
    assert len(windows) == (len(TOKENS) - 1) // L
    np.testing.assert_array_equal(windows[3], np.arange(3 * L, 4 * L + 1))
    assert windows[0].dtype == np.int32
    with pytest.raises(IndexError):
        windows[len(windows)]


def test_batches_are_shuffled_windows_of_the_stream():
    batch = next(loader())
    assert batch.shape == (8, L + 1) and batch.dtype == np.int32
    for row in batch:
        assert row[0] % L == 0  # starts on a window boundary
        np.testing.assert_array_equal(row, np.arange(row[0], row[0] + L + 1))  # targets = inputs shifted by one
    assert not np.all(np.diff(batch[:, 0]) == L)  # not in stream order


def test_one_epoch_visits_every_window_once_then_reshuffles():
    it = loader(batch=5, tokens=np.arange(801, dtype=np.uint16))  # 50 windows = 10 batches per epoch
    first = np.concatenate(take(it, 10))[:, 0]
    second = np.concatenate(take(it, 10))[:, 0]
    assert sorted(first) == sorted(second) == list(range(0, 800, L))
    assert not np.array_equal(first, second)


def test_same_seed_same_batches_other_seed_other_batches():
    a, b, c = take(loader(seed=1), 4), take(loader(seed=1), 4), take(loader(seed=2), 4)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, z) for x, z in zip(a, c))


def test_resume_from_state():
    original = loader(seed=3)
    take(original, 5)
    state = json.loads(json.dumps(original.get_state()))  # survives a JSON checkpoint
    assert state["step"] == 5
    expected = take(original, 3)
    restored = loader(seed=3)
    restored.set_state(state)
    for want, got in zip(expected, take(restored, 3)):
        np.testing.assert_array_equal(want, got)
    assert restored.get_state() == original.get_state()


def test_state_of_another_loader_is_rejected():
    state = loader(seed=3).get_state()
    with pytest.raises(ValueError, match="seed: saved 3, now 4"):
        loader(seed=4).set_state(state)


def test_per_process_shards_make_up_the_global_batch():
    whole = loader(batch=8)
    shards = [loader(batch=8, process_index=p, process_count=2) for p in range(2)]
    for _ in range(4):
        parts = [next(s) for s in shards]
        assert all(p.shape == (4, L + 1) for p in parts)
        np.testing.assert_array_equal(np.concatenate(parts), next(whole))


def test_resume_on_another_number_of_processes():
    single = loader(batch=8)
    take(single, 3)
    state = single.get_state()
    halves = [loader(batch=8, process_index=p, process_count=2) for p in range(2)]
    for half in halves:
        half.set_state(state)
    np.testing.assert_array_equal(np.concatenate([next(h) for h in halves]), next(single))


def test_batch_not_divisible_by_processes():
    with pytest.raises(ValueError, match="global_batch_size=6 must be a positive multiple of process_count=4"):
        loader(batch=6, process_count=4)


def test_default_process_index_comes_from_jax():
    assert loader(process_index=None, process_count=None).process_count == 1


def test_seq_len_at_schedule():
    kw = dict(min_len=8, max_len=64, warmup_steps=100, bucket=8)
    lengths = [seq_len_at(t, **kw) for t in range(150)]
    assert lengths[0] == 8 and lengths[100] == 64 and lengths[-1] == 64
    assert all(b >= a for a, b in zip(lengths, lengths[1:]))  # ramps up
    assert all(x % 8 == 0 for x in lengths)
    assert seq_len_at(50, **kw) == 32  # 8 + 56 * 0.5 = 36 -> 32
    assert seq_len_at(5, min_len=1, max_len=64, warmup_steps=100, bucket=8) == 8  # never below one bucket
    assert seq_len_at(99, min_len=8, max_len=60, warmup_steps=100, bucket=8) == 56
    assert seq_len_at(100, min_len=8, max_len=60, warmup_steps=100, bucket=8) == 60  # max_len itself allowed
    assert seq_len_at(0, min_len=8, max_len=64, warmup_steps=0, bucket=8) == 64  # off
    assert seq_len_buckets(**kw) == sorted(set(lengths)) == list(range(8, 65, 8))
    assert seq_len_buckets(min_len=8, max_len=60, warmup_steps=100, bucket=8) == [
        8,
        16,
        24,
        32,
        40,
        48,
        56,
        60,
    ]


def test_warmup_batches_are_truncated_windows():
    warmup = SeqLenWarmup(warmup_steps=20, min_len=8, bucket=8)
    it = loader(seq_len=64, warmup=warmup)
    plain = loader(seq_len=64)
    shapes = []
    for step in range(25):
        batch, full = next(it), next(plain)
        length = seq_len_at(step, min_len=8, max_len=64, warmup_steps=20, bucket=8)
        assert batch.shape == (8, length + 1)
        np.testing.assert_array_equal(batch, full[:, : length + 1])  # same windows, kept prefix
        shapes.append(batch.shape)
    assert shapes[0] == (8, 9) and shapes[-1] == (8, 65)
    assert len(set(shapes)) == len(seq_len_buckets(min_len=8, max_len=64, warmup_steps=20, bucket=8)) == 8


def test_warmup_from_config():
    assert SeqLenWarmup.from_config(DataConfig()) is None
    cfg = DataConfig(seq_len_warmup_steps=300, seq_len_min=16, seq_len_bucket=32)
    assert SeqLenWarmup.from_config(cfg) == SeqLenWarmup(300, 16, 32)


def test_tokens_seen_matches_the_batches():
    warmup = SeqLenWarmup(warmup_steps=10, min_len=8, bucket=8)
    it = loader(seq_len=64, batch=4, warmup=warmup)
    kw = dict(batch_size=4, min_len=8, max_len=64, warmup_steps=10, bucket=8)
    total = 0
    for step in range(15):
        assert tokens_seen(step, **kw) == total
        total += next(it)[:, :-1].size
    np.testing.assert_array_equal(tokens_seen(np.array([0, 15]), **kw), [0, total])
    assert tokens_seen(7, batch_size=4, min_len=8, max_len=64, warmup_steps=0, bucket=8) == 7 * 4 * 64


def test_eval_batches_are_fixed_and_spread():
    kw = dict(seq_len=L, batch_size=4, num_batches=3, process_index=0, process_count=1)
    first, second = eval_batches(TOKENS, **kw), eval_batches(TOKENS, **kw)
    assert len(first) == 3 and all(b.shape == (4, L + 1) and b.dtype == np.int32 for b in first)
    for x, y in zip(first, second):
        np.testing.assert_array_equal(x, y)
    starts = np.concatenate(first)[:, 0]
    assert starts[0] == 0 and starts[-1] > len(TOKENS) - 2 * L - 1  # from the start to the end of the stream
    assert len(set(starts)) == 12 and all(s % L == 0 for s in starts)
    shards = [eval_batches(TOKENS, **{**kw, "process_index": p, "process_count": 2}) for p in range(2)]
    for b, (x, y) in enumerate(zip(*shards)):
        np.testing.assert_array_equal(np.concatenate([x, y]), first[b])


def test_eval_batches_on_a_short_stream_overlap():
    tokens = np.arange(100, dtype=np.uint16)
    batches = eval_batches(tokens, seq_len=L, batch_size=8, num_batches=2, process_index=0, process_count=1)
    rows = np.concatenate(batches)
    assert rows.shape == (16, L + 1) and rows[-1, -1] == 99
    for row in rows:
        np.testing.assert_array_equal(row, np.arange(row[0], row[0] + L + 1))
    with pytest.raises(ValueError, match="fewer than one window"):
        eval_batches(tokens[:10], seq_len=L, batch_size=2, num_batches=1, process_index=0, process_count=1)


def test_worker_processes_give_the_same_batches(tmp_path):
    np.save(tmp_path / "tokens.npy", TOKENS)
    tokens = np.load(tmp_path / "tokens.npy", mmap_mode="r")
    warmup = SeqLenWarmup(warmup_steps=4, min_len=8, bucket=8)
    kw = dict(seq_len=L, global_batch_size=8, seed=5, process_index=0, process_count=1, seq_len_warmup=warmup)
    in_process = TrainLoader(tokens, **kw)
    with_workers = TrainLoader(tokens, **kw, num_workers=1)
    for want, got in zip(take(in_process, 6), take(with_workers, 6)):
        np.testing.assert_array_equal(want, got)
