import gc
import itertools
import threading
import time

import numpy as np
import pytest

from charjax.data.pipeline import BatchIterator
from charjax.errors import CharjaxError


def _arrays(n=23, size=4):
    # Each image is filled with its own index, so a batch says which examples it holds.
    ids = np.arange(n)
    return {
        "image": np.broadcast_to((ids % 256).astype(np.uint8)[:, None, None], (n, size, size)),
        "label": (ids % 62).astype(np.int64),
        "id": ids,
    }


def _take(it, k):
    return list(itertools.islice(it, k))


def _assert_same(batches_a, batches_b):
    assert len(batches_a) == len(batches_b)
    for a, b in zip(batches_a, batches_b, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_batches_have_contracted_dtypes_and_shapes():
    with BatchIterator(_arrays(), 8) as it:
        batch = next(it)
    assert batch["image"].dtype == np.uint8 and batch["image"].shape == (8, 4, 4)
    assert batch["label"].dtype == np.int32 and batch["label"].shape == (8,)
    assert batch["mask"].dtype == bool and batch["mask"].all()
    np.testing.assert_array_equal(batch["label"], batch["id"] % 62)
    assert it.steps_per_epoch == 2 and it.num_examples == 23


def test_same_seed_same_batches_and_other_seed_differs():
    with BatchIterator(_arrays(), 8, seed=3) as a, BatchIterator(_arrays(), 8, seed=3) as b:
        _assert_same(_take(a, 5), _take(b, 5))
    with BatchIterator(_arrays(), 8, seed=4) as c, BatchIterator(_arrays(), 8, seed=3) as d:
        assert not np.array_equal(next(c)["id"], next(d)["id"])


def test_train_epochs_are_permutations_with_remainder_dropped():
    with BatchIterator(_arrays(), 8) as it:
        epochs = [np.concatenate([b["id"] for b in _take(it, 2)]) for _ in range(3)]
    for ids in epochs:
        assert len(np.unique(ids)) == 16  # 23 // 8 full batches, no repeats within an epoch
    assert not np.array_equal(epochs[0], epochs[1])  # reshuffled every epoch


@pytest.mark.parametrize("k", [0, 1, 2, 3, 5])  # 2 batches per epoch: k=2, 3 cross a boundary
def test_resume_from_state_yields_the_following_batches(k):
    with BatchIterator(_arrays(), 8, seed=7) as it:
        uninterrupted = _take(it, k + 4)
    with BatchIterator(_arrays(), 8, seed=7) as it:
        _take(it, k)
        state = it.state()
        time.sleep(0.05)  # let the thread run ahead: the state must not move with it
        assert it.state() == state
    assert set(state) == {"seed", "epoch", "position"}
    assert state == {"seed": 7, "epoch": k // 2, "position": k % 2}
    # The seed comes from the state, not the constructor argument.
    with BatchIterator(_arrays(), 8, seed=0, state=state) as resumed:
        _assert_same(_take(resumed, 4), uninterrupted[k:])


def test_process_shards_are_disjoint_and_cover_each_global_batch():
    with BatchIterator(_arrays(), 8, process_count=1) as single:
        global_batches = _take(single, 4)
    shards = [BatchIterator(_arrays(), 8, process_index=p, process_count=2) for p in range(2)]
    for step, (b0, b1) in enumerate(zip(*(_take(s, 4) for s in shards), strict=True)):
        assert len(b0["id"]) == len(b1["id"]) == 4
        assert not set(b0["id"]) & set(b1["id"])
        np.testing.assert_array_equal(
            np.concatenate([b0["id"], b1["id"]]), global_batches[step]["id"]
        )
    for s in shards:
        s.close()


@pytest.mark.parametrize("process_count", [1, 2])
def test_eval_covers_every_example_exactly_once(process_count):
    n, batch_size = 23, 8
    runs = []
    for p in range(process_count):
        it = BatchIterator(
            _arrays(n), batch_size, train=False, process_index=p, process_count=process_count
        )
        runs.append(list(it))
        assert it.steps_per_epoch == 3
    # Every process yields the same number of batches, or collectives would deadlock.
    assert {len(r) for r in runs} == {3}
    ids = np.concatenate([b["id"][b["mask"]] for r in runs for b in r])
    np.testing.assert_array_equal(np.sort(ids), np.arange(n))
    masks = np.concatenate([b["mask"] for r in runs for b in r])
    assert masks.sum() == n and len(masks) == 3 * batch_size
    assert all(len(b["id"]) == batch_size // process_count for r in runs for b in r)


def test_eval_resume_and_finished_state():
    with BatchIterator(_arrays(), 8, train=False) as it:
        first = next(it)
        state = it.state()
        rest = list(it)
        assert it.state() == {"seed": 0, "epoch": 1, "position": 0}
    assert len(rest) == 2 and first["mask"].all()
    _assert_same(list(BatchIterator(_arrays(), 8, train=False, state=state)), rest)
    assert list(BatchIterator(_arrays(), 8, train=False, state=it.state())) == []


def test_memmap_arrays(tmp_path):
    arrays = _arrays()
    np.save(tmp_path / "images.npy", np.ascontiguousarray(arrays["image"]))
    mapped = dict(arrays, image=np.load(tmp_path / "images.npy", mmap_mode="r"))
    with BatchIterator(mapped, 8, seed=1) as a, BatchIterator(arrays, 8, seed=1) as b:
        _assert_same(_take(a, 3), _take(b, 3))


def test_put_runs_in_the_background_thread():
    threads = set()

    def put(batch):
        threads.add(threading.current_thread().name)
        return {k: ("placed", v) for k, v in batch.items()}

    with BatchIterator(_arrays(), 8, put=put) as it:
        batch = next(it)
    assert batch["image"][0] == "placed"
    assert threads == {"charjax-batches"}


def _assert_stops(it):
    thread = it._thread
    it.close()
    deadline = time.monotonic() + 1.0
    while thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not thread.is_alive()


def test_error_in_put_surfaces_in_the_consumer():
    def put(batch):
        raise ValueError("no devices")

    it = BatchIterator(_arrays(), 8, put=put)
    with pytest.raises(ValueError, match="no devices"):
        next(it)
    with pytest.raises(StopIteration):
        next(it)
    _assert_stops(it)


def test_bad_array_surfaces_in_the_consumer():
    arrays = dict(_arrays(), label=np.array(["x"] * 23))  # not castable to int32
    with BatchIterator(arrays, 8) as it, pytest.raises(ValueError):
        next(it)


def test_consumer_exception_then_close_stops_the_thread():
    it = BatchIterator(_arrays(), 8, prefetch=1)
    with pytest.raises(KeyError):
        for step, _ in enumerate(it):
            if step == 2:
                time.sleep(0.05)  # the producer is now blocked on a full queue
                raise KeyError("consumer failed")
    _assert_stops(it)


def test_break_early_then_close():
    it = BatchIterator(_arrays(), 8)
    for step, _ in enumerate(it):
        if step == 1:
            break
    _assert_stops(it)
    with pytest.raises(StopIteration):
        next(it)


def test_abandoned_iterator_stops_its_thread():
    it = BatchIterator(_arrays(), 8)
    next(it)
    thread = it._thread
    del it  # the thread holds no reference to the iterator, so this runs __del__ -> close()
    gc.collect()
    thread.join(timeout=1.0)
    assert not thread.is_alive()


def test_dataset_smaller_than_one_batch():
    with pytest.raises(CharjaxError, match="smaller than one batch"):
        BatchIterator(_arrays(5), 8)
    # Eval is fine with a tiny dataset: one padded batch.
    (batch,) = list(BatchIterator(_arrays(5), 8, train=False))
    assert batch["mask"].sum() == 5


def test_bad_arguments():
    with pytest.raises(CharjaxError, match="divisible"):
        BatchIterator(_arrays(), 9, process_count=2)
    with pytest.raises(CharjaxError, match="lengths"):
        BatchIterator(dict(_arrays(), id=np.arange(3)), 8)
    with pytest.raises(CharjaxError, match="batch size"):
        BatchIterator(_arrays(), 8, state={"seed": 0, "epoch": 0, "position": 9})
