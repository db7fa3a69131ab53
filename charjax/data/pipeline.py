"""Batches for training and evaluation: numpy, sharded by process, prefetched in a thread.

Every process computes the same global permutation for an epoch and takes its own contiguous
slice of each global batch, so the shards are disjoint and together cover the epoch without
any communication. The iterator's position (`state()`) is three integers that go into the
checkpoint; an iterator built from them yields exactly the batches the old one would have
yielded next.

A daemon thread gathers batches (and applies `put`, which usually places them on devices) a
few steps ahead. It only ever blocks for a short timeout, so it notices `close()` promptly and
never keeps the process alive at exit.
"""

import math
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from charjax.errors import CharjaxError

# How long the producer and consumer block on the queue before re-checking for a stop or a
# dead thread. Small enough that close() returns promptly.
_POLL_SECONDS = 0.05
_END = object()  # sentinel: the (eval) pass is over


def _index_stream(
    n: int,
    global_batch: int,
    local_batch: int,
    process_index: int,
    train: bool,
    seed: int,
    epoch: int,
    position: int,
) -> Iterator[tuple[np.ndarray, np.ndarray, dict]]:
    """Yields (indices [b], mask [b], state after this batch) for one process, forever in train."""
    steps = n // global_batch if train else math.ceil(n / global_batch)
    lo = process_index * local_batch
    if not train and epoch > 0:  # the single eval pass is already over
        return
    while True:
        # One permutation per epoch, seeded by (seed, epoch), so any epoch can be recomputed on
        # resume without replaying the ones before it.
        order = np.random.default_rng([seed, epoch]).permutation(n) if train else np.arange(n)
        for step in range(position, steps):
            start = step * global_batch + lo
            idx = order[start : start + local_batch]
            mask = np.ones(local_batch, bool)
            if len(idx) < local_batch:  # eval only: pad the last batch with example 0, masked
                mask[len(idx) :] = False
                idx = np.concatenate([idx, np.zeros(local_batch - len(idx), idx.dtype)])
            after = (epoch + 1, 0) if step + 1 == steps else (epoch, step + 1)
            yield idx, mask, {"seed": seed, "epoch": after[0], "position": after[1]}
        if not train:
            return
        epoch, position = epoch + 1, 0


def _offer(q: queue.Queue, item, stop: threading.Event) -> bool:
    """Puts `item` on the queue unless asked to stop first; True when it was put."""
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL_SECONDS)
            return True
        except queue.Full:
            pass
    return False


def _produce(arrays, stream, put, q: queue.Queue, stop: threading.Event) -> None:
    # A plain function rather than a method: the thread must not hold a reference to the
    # iterator, or an abandoned iterator would never be garbage-collected (and closed).
    try:
        for idx, mask, state in stream:
            if stop.is_set():
                return
            batch = {k: np.asarray(v[idx]) for k, v in arrays.items()}
            batch["label"] = batch["label"].astype(np.int32, copy=False)
            batch["mask"] = mask
            if put is not None:
                batch = put(batch)
            if not _offer(q, (batch, state, None), stop):
                return
        _offer(q, (_END, None, None), stop)
    except BaseException as e:  # handed to the consumer, which re-raises it
        _offer(q, (None, None, e), stop)


class BatchIterator:
    """Seeded, sharded, resumable batches over in-memory or memory-mapped arrays.

    Yields dicts with every key of `arrays` plus "mask" (bool [b], False on eval padding);
    "image" is uint8 [b, H, W] and "label" int32 [b], where b = batch_size // process_count.
    In train mode the batches are shuffled, fixed-size and endless (each epoch's remainder is
    dropped); in eval mode there is one ordered pass, the last batch padded and masked.

    Usage:
      with BatchIterator(cache.arrays("train"), 128, seed=0, put=to_devices) as it:
          for batch in it:
              ...
              checkpoint(it.state())
    """

    def __init__(
        self,
        arrays: dict[str, np.ndarray],
        batch_size: int,
        *,
        train: bool = True,
        seed: int = 0,
        process_index: int = 0,
        process_count: int = 1,
        prefetch: int = 2,
        put: Callable[[dict], Any] | None = None,
        state: dict | None = None,
    ):
        """Validates the arguments and starts the background thread.

        Args:
          arrays: equal-length arrays keyed by name; must include "image" and "label".
          batch_size: the GLOBAL batch size, across all processes.
          train: shuffled endless batches (True) or one ordered, padded pass (False).
          seed: seeds the per-epoch permutations; ignored when `state` is given.
          process_index, process_count: this process's shard of every global batch.
          prefetch: how many batches the thread keeps ready.
          put: applied to each batch in the thread (e.g. device placement).
          state: a dict from `state()` to resume from.
        """
        if "image" not in arrays or "label" not in arrays:
            raise CharjaxError(f"the iterator needs 'image' and 'label' arrays, got {list(arrays)}")
        lengths = {k: len(v) for k, v in arrays.items()}
        if len(set(lengths.values())) != 1:
            raise CharjaxError(f"arrays have different lengths: {lengths}")
        if batch_size < 1 or batch_size % process_count:
            raise CharjaxError(
                f"batch size {batch_size} must be positive and divisible by the number of "
                f"processes ({process_count})"
            )
        if not 0 <= process_index < process_count:
            raise CharjaxError(f"process index {process_index} not in [0, {process_count})")
        if prefetch < 1:
            raise CharjaxError(f"prefetch must be at least 1, got {prefetch}")
        self._n = lengths["image"]
        self._batch_size = batch_size
        self._train = train
        if train and self._n < batch_size:
            raise CharjaxError(
                f"the dataset ({self._n} examples) is smaller than one batch ({batch_size}); "
                "use a smaller batch size or more data"
            )
        if self._n == 0:
            raise CharjaxError("the dataset is empty")

        state = state or {"seed": seed, "epoch": 0, "position": 0}
        try:
            self._state = {k: int(state[k]) for k in ("seed", "epoch", "position")}
        except (KeyError, TypeError, ValueError):
            raise CharjaxError(f"not an iterator state: {state!r}") from None
        if not 0 <= self._state["position"] <= self.steps_per_epoch:
            raise CharjaxError(
                f"iterator state {state} does not fit this dataset "
                f"({self.steps_per_epoch} batches per epoch); was the batch size changed?"
            )
        self._done = False
        stream = _index_stream(
            self._n,
            batch_size,
            batch_size // process_count,
            process_index,
            train,
            **self._state,
        )
        self._queue: queue.Queue = queue.Queue(maxsize=prefetch)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=_produce,
            args=(arrays, stream, put, self._queue, self._stop),
            name="charjax-batches",
            daemon=True,
        )
        self._thread.start()

    @property
    def num_examples(self) -> int:
        """Examples in the whole dataset (all processes)."""
        return self._n

    @property
    def steps_per_epoch(self) -> int:
        """Batches per epoch: full batches in train mode, padded batches in one eval pass."""
        if self._train:
            return self._n // self._batch_size
        return math.ceil(self._n / self._batch_size)

    def state(self) -> dict:
        """JSON-able position after the last batch returned by `__next__`."""
        return dict(self._state)

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        if self._done:
            raise StopIteration
        while True:
            try:
                batch, state, error = self._queue.get(timeout=_POLL_SECONDS)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    self.close()
                    raise RuntimeError("the batch thread stopped unexpectedly") from None
        if error is not None:
            self.close()
            raise error
        if batch is _END:
            self.close()
            raise StopIteration
        self._state = state
        return batch

    def close(self) -> None:
        """Stops the thread and drops prefetched batches. Safe to call more than once."""
        self._done = True
        self._stop.set()
        # Free queue slots so a producer blocked in put() wakes up at once.
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        # Best effort, and nothing to do once closed. __init__ may have failed before the
        # thread existed, and at interpreter exit module globals (queue, even contextlib) may
        # already be None; the daemon thread dies with the process anyway.
        stop = getattr(self, "_stop", None)
        if stop is not None and not stop.is_set():
            try:  # noqa: SIM105
                self.close()
            except Exception:
                pass
