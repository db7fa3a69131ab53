"""`--data A+B` and `A:0.7+B:0.3`: parsing, weights, reuse, and refusals."""

from pathlib import Path

import numpy as np
import pytest

from charjax.data.cache import SPLITS, describe, load_cache, write_cache
from charjax.data.mixture import DataPart, parse_data, resample
from charjax.data.sources import resolve_data
from charjax.errors import CharjaxError
from charjax.preprocess import PreprocessSpec

SIZE = 8


def _cache(path: Path, n_train: int, n_val: int, label: int, spec=None, size=SIZE) -> Path:
    """A cache whose images are filled with their own index, so each can be traced."""
    n = n_train + n_val
    images = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None], (n, size, size))
    splits = np.r_[np.zeros(n_train), np.ones(n_val)]
    meta = {
        "source": f"test-{label}",
        "preprocess": (spec or PreprocessSpec(size)).to_dict(),
        "group_names": [f"g{label}"],
    }
    labels = np.full(n, label)
    return write_cache(path, images, labels, np.zeros(n), splits, meta)


@pytest.fixture
def two(tmp_path) -> tuple[Path, Path]:
    """A big part (200 train, label 1) and a small one (20 train, label 2), 10 val each."""
    return _cache(tmp_path / "big", 200, 10, 1), _cache(tmp_path / "small", 20, 10, 2)


def test_parse_data():
    assert parse_data("fonts") == [DataPart("fonts", (), None, "fonts")]
    assert parse_data("fonts:0.7+chars74k:hand:0.3") == [
        DataPart("fonts", (), 0.7, "fonts"),
        DataPart("chars74k", ("hand",), 0.3, "chars74k:hand"),
    ]
    assert parse_data("chars74k:font,hand:writer")[0].args == ("font,hand", "writer")
    assert parse_data("data/mine:2+fonts:1")[0] == DataPart(
        "path", ("data/mine",), 2.0, "data/mine"
    )
    assert parse_data("C:/data/x")[0].args == ("C:/data/x",)  # a drive letter is no weight


@pytest.mark.parametrize(
    "spec, message",
    [
        ("fonts:0.7+chars74k:hand", "give a weight to every part or to none"),
        ("fonts:0+chars74k:hand:1", "the weight must be positive"),
        ("fonts:bold", "'fonts' takes no options"),
        ("fonts++chars74k", "empty part"),
        ("chars74k:font:random:x:1", "expected chars74k"),
    ],
)
def test_parse_data_refuses(spec, message):
    with pytest.raises(CharjaxError, match=message):
        parse_data(spec)


def test_resample_repeats_evenly():
    rng = np.random.default_rng(0)
    counts = np.bincount(resample(np.arange(10), 25, rng), minlength=10)
    assert counts.sum() == 25 and set(counts.tolist()) == {2, 3}
    assert len(set(resample(np.arange(10), 4, rng).tolist())) == 4  # no repeats when shrinking


def test_unweighted_mixture_is_the_concatenation(two, tmp_path):
    big, small = two
    mix = resolve_data(f"{big}+{small}", SIZE, data_dir=str(tmp_path), progress=False)
    assert mix.meta["source"] == "mixture" and mix.path.parent == tmp_path
    assert [len(mix.indices(s)) for s in SPLITS] == [220, 20, 0]
    assert np.bincount(mix.labels[mix.indices("train")]).tolist() == [0, 200, 20]
    assert mix.meta["preprocess"] == PreprocessSpec(SIZE).to_dict()
    assert mix.meta["group_names"] == [f"{big}: g1", f"{small}: g2"]
    assert sorted(np.unique(mix.groups).tolist()) == [0, 1]


def test_weights_set_the_train_shares_and_leave_val_whole(two, tmp_path):
    big, small = two
    mix = resolve_data(f"{big}:0.7+{small}:0.3", SIZE, str(tmp_path), False)
    train = mix.indices("train")
    # The natural total (220) is kept; the shares follow the weights.
    assert np.bincount(mix.labels[train]).tolist() == [0, 154, 66]
    small_images = mix.images[train][mix.labels[train] == 2][:, 0, 0]
    repeats = np.bincount(small_images, minlength=20)
    assert set(repeats.tolist()) == {3, 4}  # 66 = 20 images x 3, plus 6 of them once more
    assert np.bincount(mix.labels[mix.indices("val")]).tolist() == [0, 10, 10]
    assert [p["weight"] for p in mix.meta["parts"]] == [0.7, 0.3]


def test_mixture_is_reused_until_a_part_changes(two, tmp_path):
    big, small = two
    spec = f"{big}:1+{small}:1"
    first = resolve_data(spec, SIZE, str(tmp_path), False)
    again = resolve_data(spec, SIZE, str(tmp_path), False)
    assert again.path == first.path and again.meta["created"] == first.meta["created"]
    assert (first.path / "images.npy").stat().st_mtime_ns == (
        again.path / "images.npy"
    ).stat().st_mtime_ns
    _cache(small, 30, 10, 2)  # the part is prepared again: the mixture follows
    rebuilt = resolve_data(spec, SIZE, str(tmp_path), False)
    assert rebuilt.path == first.path
    assert np.bincount(rebuilt.labels[rebuilt.indices("train")]).tolist() == [0, 115, 115]


def test_parts_with_another_preprocessing_are_refused(two, tmp_path):
    big, _ = two
    other = _cache(tmp_path / "other", 5, 1, 3, spec=PreprocessSpec(SIZE, crop=False))
    with pytest.raises(CharjaxError, match="preprocessed differently"):
        resolve_data(f"{big}+{other}", SIZE, str(tmp_path), False)


def test_parts_with_another_size_are_refused(two, tmp_path):
    big, _ = two
    other = _cache(tmp_path / "other16", 5, 1, 3, size=16)
    with pytest.raises(CharjaxError, match="has 16px images but --image-size is 8"):
        resolve_data(f"{big}+{other}", SIZE, str(tmp_path), False)


def test_a_single_path_with_plus_in_its_name_is_a_cache(tmp_path):
    path = _cache(tmp_path / "fonts+hand:0.5", 5, 1, 1)
    cache = resolve_data(str(path), SIZE, str(tmp_path), False)
    assert cache.path == path and load_cache(path).meta["source"] == "test-1"


def test_unknown_part_names_the_part(two, tmp_path):
    big, _ = two
    with pytest.raises(CharjaxError, match="unknown --data 'nope'"):
        resolve_data(f"{big}+nope", SIZE, str(tmp_path), False)


def test_parse_data_reads_nocase_after_the_weight():
    assert parse_data("data/hand:0.3:nocase+fonts:0.7") == [
        DataPart("path", ("data/hand",), 0.3, "data/hand", nocase=True),
        DataPart("fonts", (), 0.7, "fonts"),
    ]
    assert parse_data("fonts:nocase") == [DataPart("fonts", (), None, "fonts", nocase=True)]
    with pytest.raises(CharjaxError, match="':nocase' goes last"):
        parse_data("data/hand:nocase:0.3")


def test_a_nocase_part_flags_its_images_and_only_them(two, tmp_path):
    big, small = two
    plain = resolve_data(f"{big}:1+{small}:1", SIZE, str(tmp_path), False)
    flagged = resolve_data(f"{big}:1+{small}:1:nocase", SIZE, str(tmp_path), False)
    assert flagged.path != plain.path  # not the unflagged mixture reused
    assert "nocase" not in plain.arrays("train")
    for split in ("train", "val"):
        arrays = flagged.arrays(split)
        assert arrays["nocase"].tolist() == (arrays["label"] == 2).tolist()
    assert flagged.meta["data"] == f"{big}:1+{small}:1:nocase"
    said = describe(flagged).splitlines()
    assert f"  part      {big}: weight 1, 110 train" in said
    not_taught = "not teaching the case of c o s v w x z (:nocase)"
    assert f"  part      {small}: weight 1, 110 train, {not_taught}" in said
    # One flagged part alone is still a mixture, so the flag reaches the batches.
    alone = resolve_data(f"{small}:nocase", SIZE, str(tmp_path), False)
    assert alone.meta["source"] == "mixture" and alone.arrays("train")["nocase"].all()
