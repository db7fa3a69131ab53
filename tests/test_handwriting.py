import dataclasses

import numpy as np
import pytest
from conftest import run_cli

from charjax.data.cache import SPLITS, load_cache
from charjax.data.handwriting import (
    HandwritingOptions,
    build_handwriting_dataset,
    render_char,
    sample_writer,
    writer_rng,
)
from charjax.data.handwriting_forms import FORMS, form_weights
from charjax.data.mixture import parse_data
from charjax.data.sources import default_handwriting_cache, resolve_data
from charjax.errors import CharjaxError
from charjax.labels import CLASSES
from charjax.preprocess import PreprocessSpec, preprocess


def _writer(seed=0, **changes):
    return dataclasses.replace(sample_writer(writer_rng(seed, 0)), **changes)


def test_every_letterform_of_every_class_renders_ink():
    spec = PreprocessSpec(size=32)
    rng = np.random.default_rng(0)
    assert set(FORMS) == set(CLASSES)
    for char in CLASSES:
        for k in range(len(FORMS[char])):
            forms = tuple(k if c == char else 0 for c in CLASSES)
            writer = _writer(forms=forms, mix=0.0)
            scan = render_char(char, writer, rng)
            assert scan.dtype == np.uint8 and scan.min() < 100 < 230 < np.median(scan), char
            image = preprocess(scan, spec)
            # Ink fills the box (cropped to it) without flooding it: a drawn line, not a blob.
            ink = (image > 64).mean()
            assert 0.01 < ink < 0.7, (char, k, ink)


def _slant(scan: np.ndarray) -> float:
    """How far the ink leans right per unit of height (ink-weighted regression)."""
    ink = np.clip(200.0 - scan.astype(np.float64), 0, None)  # the line, not the paper's grain
    rows, cols = np.indices(scan.shape)
    w = ink / ink.sum()
    r, c = (w * rows).sum(), (w * cols).sum()
    return -float((w * (rows - r) * (cols - c)).sum() / (w * (rows - r) ** 2).sum())


def test_one_writer_keeps_one_slant_across_characters():
    # A bare stem (the first form of 'I', 'l' and '1') shows the slant and nothing else.
    stems = {"I": 0, "l": 0, "1": 0}
    forms = tuple(stems.get(c, 0) for c in CLASSES)
    measured = {}
    for slant in (-0.15, 0.35):
        writer = _writer(forms=forms, mix=0.0, slant=slant, wobble=0.0, variability=0.0, scan=64.0)
        rng = np.random.default_rng(1)
        measured[slant] = [_slant(render_char(c, writer, rng)) for c in "Il1" * 4]
    for slant, values in measured.items():
        # Per-character jitter (slant and rotation) is small next to the writer's own slant.
        assert abs(np.mean(values) - slant) < 0.06, (slant, values)
        assert np.std(values) < 0.1
    assert max(measured[-0.15]) < min(measured[0.35])


def test_writers_differ_and_keep_their_letterforms():
    a, b = sample_writer(writer_rng(0, 0)), sample_writer(writer_rng(0, 1))
    assert a != b
    assert a == sample_writer(writer_rng(0, 0))  # a writer is a function of (seed, index)
    assert len(a.forms) == len(CLASSES)
    assert all(0 <= f < len(FORMS[c]) for f, c in zip(a.forms, CLASSES, strict=True))


def test_writers_choose_forms_by_their_weights():
    for char in CLASSES:
        w = form_weights(char)
        assert len(w) == len(FORMS[char]) and abs(w.sum() - 1) < 1e-9 and (w > 0).all()
    # The bare stem is the usual 1: more writers draw it than any other form of 1.
    ones = np.bincount([sample_writer(writer_rng(0, i)).forms[1] for i in range(400)])
    assert ones.argmax() == 0 and 0.3 < ones[0] / 400 < 0.6


@pytest.fixture(scope="module")
def hand_cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("hand")
    return build_handwriting_dataset(root / "handwriting-16", size=16, writers=10, workers=1)


def test_cache_loads_split_by_writer(hand_cache):
    cache = load_cache(hand_cache)
    assert cache.meta["source"] == "handwriting" and cache.meta["split_by"] == "writer"
    assert len(cache) == 10 * 62 and cache.image_size == 16
    assert cache.meta["preprocess"] == PreprocessSpec(size=16).to_dict()
    np.testing.assert_array_equal(np.bincount(cache.labels), np.full(62, 10))
    writers = [set(np.asarray(cache.groups)[cache.indices(s)].tolist()) for s in SPLITS]
    assert [len(w) for w in writers] == [8, 1, 1]
    assert not (writers[0] & writers[1] or writers[0] & writers[2] or writers[1] & writers[2])
    assert (np.asarray(cache.images).reshape(len(cache), -1).max(axis=1) > 64).all()  # ink


def test_same_seed_same_dataset_other_seed_other(hand_cache, tmp_path):
    again = load_cache(build_handwriting_dataset(tmp_path / "a", size=16, writers=10, workers=1))
    np.testing.assert_array_equal(
        np.asarray(again.images), np.asarray(load_cache(hand_cache).images)
    )
    other = load_cache(
        build_handwriting_dataset(tmp_path / "b", size=16, writers=10, seed=1, workers=1)
    )
    assert not np.array_equal(np.asarray(other.images), np.asarray(again.images))


def test_data_keyword_uses_the_default_cache(hand_cache):
    assert [p.kind for p in parse_data("fonts:3+handwriting:1")] == ["fonts", "handwriting"]
    with pytest.raises(CharjaxError, match="'handwriting' takes no options"):
        parse_data("handwriting:big")
    root = hand_cache.parent
    assert default_handwriting_cache(16, str(root)) == hand_cache
    assert resolve_data("handwriting", 16, data_dir=str(root)).path == hand_cache


def test_invalid_options():
    with pytest.raises(CharjaxError, match="writers"):
        HandwritingOptions(writers=2)
    with pytest.raises(CharjaxError, match="fractions"):
        HandwritingOptions(val_fraction=0.5, test_fraction=0.5)


def test_cli_writes_a_dataset_and_refuses_bad_input(tmp_path, capsys):
    out = tmp_path / "hand"
    args = ["data", "handwriting", "--out", out, "--size", "16", "--writers", "3"]
    code, stdout, _ = run_cli(capsys, *args, "--workers", "1")
    assert code == 0 and "wrote 186 images (3 writers" in stdout
    assert len(load_cache(out)) == 186
    code, _, err = run_cli(capsys, "data", "handwriting", "--out", out, "--writers", "1")
    assert code == 2 and "--writers" in err and "Traceback" not in err
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("mine")
    code, _, err = run_cli(capsys, "data", "handwriting", "--out", notes, "--writers", "3")
    assert code == 2 and "not a charjax dataset" in err
    assert (notes / "todo.txt").read_text() == "mine"
