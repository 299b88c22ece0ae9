"""Batches of token windows: grain pipeline, per-process shard, resumable, sequence-length warmup.

Example i of a stream is the window `tokens[i*L : i*L + L + 1]` (inputs = [:-1],
targets = [1:]). A training batch at step t has shape (local_batch, L_t + 1) where L_t is
the sequence length of the warmup schedule (L_t = L without warmup).

State: the loader is a pure function of (seed, step) built on grain's random-access
`MapDataset`, so its checkpoint state is just the number of batches already returned
(plus the settings, checked on restore).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import grain
import numpy as np


class TokenWindows:
    """Random-access source of the non-overlapping windows of a 1-D token array (int32 rows of L+1)."""

    def __init__(self, tokens: np.ndarray, seq_len: int):
        if seq_len < 1:
            raise ValueError(f"seq_len={seq_len} must be >= 1")
        if len(tokens) < seq_len + 1:
            raise ValueError(f"a stream of {len(tokens)} tokens is too short for one window of seq_len={seq_len} (+1)")
        self.tokens = tokens
        self.seq_len = seq_len

    def __len__(self) -> int:
        return (len(self.tokens) - 1) // self.seq_len

    def __getitem__(self, index: int) -> np.ndarray:
        if not 0 <= index < len(self):
            raise IndexError(f"window {index} out of range [0, {len(self)})")
        start = index * self.seq_len
        return np.asarray(self.tokens[start : start + self.seq_len + 1], dtype=np.int32)

    def __repr__(self) -> str:
        return f"TokenWindows({len(self.tokens)} tokens, seq_len={self.seq_len})"

    def __getstate__(self) -> dict:
        # Worker processes reopen a memmapped stream from its file instead of receiving a copy.
        tokens = self.tokens
        if isinstance(tokens, np.memmap) and tokens.filename and tokens.ndim == 1 and tokens.flags.c_contiguous:
            where = (tokens.filename, tokens.offset, tokens.dtype.str, len(tokens))
            return {"memmap": where, "seq_len": self.seq_len}
        return {"tokens": np.asarray(tokens), "seq_len": self.seq_len}

    def __setstate__(self, state: dict) -> None:
        self.seq_len = state["seq_len"]
        if "memmap" in state:
            filename, offset, dtype, length = state["memmap"]
            self.tokens = np.memmap(filename, dtype=np.dtype(dtype), mode="r", offset=offset, shape=(length,))
        else:
            self.tokens = state["tokens"]


# ----------------------------------------------------------------------------- sequence-length warmup


@dataclasses.dataclass(frozen=True)
class SeqLenWarmup:
    """Sequence-length warmup (Li, Zhang & He 2022): lengths ramp linearly from min_len to the full length."""

    warmup_steps: int
    min_len: int = 8
    bucket: int = 8

    def __post_init__(self):
        if self.warmup_steps < 0 or self.min_len < 1 or self.bucket < 1:
            raise ValueError(f"invalid {self}: warmup_steps >= 0, min_len >= 1 and bucket >= 1 are required")

    def length_at(self, step: int, max_len: int) -> int:
        return seq_len_at(
            step, min_len=self.min_len, max_len=max_len, warmup_steps=self.warmup_steps, bucket=self.bucket
        )

    @classmethod
    def from_config(cls, cfg) -> SeqLenWarmup | None:
        """From a DataConfig's seq_len_* fields; None when the warmup is off."""
        if cfg.seq_len_warmup_steps <= 0:
            return None
        return cls(cfg.seq_len_warmup_steps, cfg.seq_len_min, cfg.seq_len_bucket)


def seq_len_at(step: int, *, min_len: int, max_len: int, warmup_steps: int, bucket: int) -> int:
    """L_t = min_len + (max_len - min_len) * min(step / warmup_steps, 1), rounded down to a multiple
    of `bucket`, clipped to [bucket, max_len]; max_len itself once the warmup is over."""
    if warmup_steps <= 0 or step >= warmup_steps:
        return max_len
    step = max(int(step), 0)
    # floor((min_len + (max_len - min_len) * step / warmup_steps) / bucket) * bucket, in integers
    numerator = min_len * warmup_steps + (max_len - min_len) * step
    length = numerator // (warmup_steps * bucket) * bucket
    return int(min(max(length, bucket), max_len))


def _lengths(num_steps: int, *, min_len: int, max_len: int, warmup_steps: int, bucket: int) -> np.ndarray:
    """seq_len_at for steps 0 .. num_steps-1, vectorised."""
    steps = np.arange(num_steps, dtype=np.int64)
    if warmup_steps <= 0:
        return np.full(num_steps, max_len, np.int64)
    numerator = min_len * warmup_steps + (max_len - min_len) * np.minimum(steps, warmup_steps)
    lengths = np.clip(numerator // (warmup_steps * bucket) * bucket, bucket, max_len)
    return np.where(steps >= warmup_steps, max_len, lengths)


def seq_len_buckets(*, min_len: int, max_len: int, warmup_steps: int, bucket: int) -> list[int]:
    """The sorted distinct lengths the schedule uses (the shapes a trainer should precompile)."""
    if warmup_steps <= 0:
        return [max_len]
    lengths = _lengths(warmup_steps + 1, min_len=min_len, max_len=max_len, warmup_steps=warmup_steps, bucket=bucket)
    return sorted(int(x) for x in np.unique(lengths))


def tokens_seen(step, *, batch_size: int, min_len: int, max_len: int, warmup_steps: int, bucket: int):
    """Input tokens consumed by steps 0 .. step-1 (sum of batch_size * L_t), for token-based LR schedules.

    `step` may be an int or an integer numpy array; the result has the same shape (int64).
    """
    steps = np.asarray(step, dtype=np.int64)
    if np.any(steps < 0):
        raise ValueError("step must be >= 0")
    ramp = max(warmup_steps, 0)
    per_step = _lengths(ramp, min_len=min_len, max_len=max_len, warmup_steps=warmup_steps, bucket=bucket)
    cumulative = np.concatenate([[0], np.cumsum(per_step)])  # tokens per row after k ramp steps
    in_ramp = cumulative[np.minimum(steps, ramp)]
    after_ramp = np.maximum(steps - ramp, 0) * max_len
    total = batch_size * (in_ramp + after_ramp)
    return int(total) if np.ndim(total) == 0 else total


# ----------------------------------------------------------------------------- training batches


def _process_defaults(process_index: int | None, process_count: int | None) -> tuple[int, int]:
    if process_index is None or process_count is None:
        import jax  # only for the defaults

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index={process_index} must be in [0, process_count={process_count})")
    return process_index, process_count


def _local_batch_size(global_batch_size: int, process_count: int) -> int:
    if global_batch_size < 1 or global_batch_size % process_count:
        raise ValueError(
            f"global_batch_size={global_batch_size} must be a positive multiple of "
            f"process_count={process_count} (each process loads global_batch_size // process_count rows)"
        )
    return global_batch_size // process_count


class TrainLoader:
    """Endless, shuffled, per-process batches of training windows.

    Pipeline (grain MapDataset): windows -> shuffle(seed) -> repeat (each epoch reshuffled) ->
    batch(local rows) -> take this process's batch of every global batch -> truncate rows to
    L_t + 1 under sequence-length warmup. Global batch t is rows [t*B, (t+1)*B) of the
    shuffled, repeated window order; process p gets rows [t*B + p*b, t*B + (p+1)*b).
    """

    def __init__(
        self,
        tokens: np.ndarray,
        *,
        seq_len: int,
        global_batch_size: int,
        seed: int,
        process_index: int | None = None,
        process_count: int | None = None,
        seq_len_warmup: SeqLenWarmup | None = None,
        num_workers: int = 0,
    ):
        self.process_index, self.process_count = _process_defaults(process_index, process_count)
        self.local_batch_size = _local_batch_size(global_batch_size, self.process_count)
        self.global_batch_size = global_batch_size
        self.seq_len = seq_len
        self.seed = int(seed)
        self.seq_len_warmup = seq_len_warmup
        self.num_workers = num_workers
        if seq_len_warmup is not None and seq_len_warmup.min_len > seq_len:
            raise ValueError(f"seq_len_warmup.min_len={seq_len_warmup.min_len} exceeds seq_len={seq_len}")
        self._windows = TokenWindows(tokens, seq_len)
        self._batches = self._build()
        self._step = 0
        self._iterator: Iterator[np.ndarray] | None = None

    def _build(self) -> grain.MapDataset:
        batches = (
            grain.MapDataset.source(self._windows)
            .shuffle(seed=self.seed)
            .repeat()
            .batch(self.local_batch_size, drop_remainder=True)
        )[self.process_index :: self.process_count]
        if self.seq_len_warmup is not None:
            batches = batches.map_with_index(_Truncate(self.seq_len_warmup, self.seq_len))
        return batches

    def length_at(self, step: int) -> int:
        """L_t: the sequence length of batch `step` (the rows have L_t + 1 tokens)."""
        if self.seq_len_warmup is None:
            return self.seq_len
        return self.seq_len_warmup.length_at(step, self.seq_len)

    @property
    def step(self) -> int:
        """How many batches have been returned."""
        return self._step

    @property
    def windows_per_epoch(self) -> int:
        return len(self._windows)

    def batch_at(self, step: int) -> np.ndarray:
        """Batch `step` directly (random access; does not move the iterator)."""
        return self._batches[step]

    def __iter__(self) -> TrainLoader:
        return self

    def __next__(self) -> np.ndarray:
        if self._iterator is None:
            self._iterator = self._make_iterator(self._step)
        batch = next(self._iterator)
        self._step += 1
        return batch

    def next(self) -> np.ndarray:
        return self.__next__()

    def _make_iterator(self, start: int) -> Iterator[np.ndarray]:
        dataset = self._batches[start:].to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=2))
        if self.num_workers > 0:
            _mark_absl_flags_parsed()
            dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(num_workers=self.num_workers))
        return iter(dataset)

    def get_state(self) -> dict:
        """JSON-serializable position: the next batch is batch `step`."""
        return {
            "step": self._step,
            "seed": self.seed,
            "seq_len": self.seq_len,
            "global_batch_size": self.global_batch_size,
            "process_count": self.process_count,
            "windows_per_epoch": len(self._windows),
        }

    def set_state(self, state: dict) -> None:
        """Continues from a `get_state()` result; the settings must match the saved ones.

        The process count may differ: global batch t does not depend on it, so a run can
        resume on a different number of hosts.
        """
        mine = self.get_state()
        if not isinstance(state, dict):
            raise ValueError(f"loader state {state!r} is not a dict")
        for key in mine:
            value = state.get(key)
            if key in state and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"loader state {key}={value!r} is not an integer >= 0")
        if "step" not in state:
            raise ValueError("loader state has no step")
        changed = [
            f"{k}: saved {state[k]!r}, now {mine[k]!r}"
            for k in mine
            if k not in ("step", "process_count") and k in state and state[k] != mine[k]
        ]
        if changed:
            raise ValueError("loader state does not match this loader (" + "; ".join(changed) + ")")
        self._step = int(state["step"])
        self._iterator = None


@dataclasses.dataclass(frozen=True)
class _Truncate:
    """Keeps the first L_t + 1 tokens of each row of batch t (picklable for grain workers)."""

    warmup: SeqLenWarmup
    max_len: int

    def __call__(self, step: int, batch: np.ndarray) -> np.ndarray:
        return batch[:, : self.warmup.length_at(step, self.max_len) + 1]


def _mark_absl_flags_parsed() -> None:
    """grain's worker processes read absl flags, which fail unless parsed (google/grain#1355).
    Programs that do not use absl.app never parse them, so keep the defaults."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


# ----------------------------------------------------------------------------- evaluation batches


def eval_batches(
    tokens: np.ndarray,
    *,
    seq_len: int,
    batch_size: int,
    num_batches: int,
    process_index: int | None = None,
    process_count: int | None = None,
) -> list[np.ndarray]:
    """`num_batches` fixed batches of windows spread evenly over `tokens` (e.g. the validation stream).

    Every call returns the same batches. `batch_size` is global; each process gets its
    batch_size // process_count rows of each batch, shape (local_batch, seq_len + 1), int32.
    Windows do not overlap unless the stream is too short to hold them all.
    """
    process_index, process_count = _process_defaults(process_index, process_count)
    local = _local_batch_size(batch_size, process_count)
    if num_batches < 1:
        raise ValueError(f"num_batches={num_batches} must be >= 1")
    if len(tokens) < seq_len + 1:
        raise ValueError(f"the stream has {len(tokens)} tokens, fewer than one window of seq_len={seq_len} (+1)")
    wanted = batch_size * num_batches
    windows = (len(tokens) - 1) // seq_len
    if wanted <= windows:
        starts = np.linspace(0, windows - 1, wanted).round().astype(np.int64) * seq_len
    else:
        starts = np.linspace(0, len(tokens) - seq_len - 1, wanted).round().astype(np.int64)
    starts = starts.reshape(num_batches, batch_size)[:, process_index * local : (process_index + 1) * local]
    offsets = np.arange(seq_len + 1)
    return [np.asarray(tokens[row[:, None] + offsets], dtype=np.int32) for row in starts]
