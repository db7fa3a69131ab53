"""The line model: its input, its CTC training step, decoding, saving and loading."""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import dejavu

from charjax.data import lines
from charjax.data.line_data import (
    ALPHABET,
    LINE_HEIGHT,
    MARGIN,
    LineDataOptions,
    build_line_cache,
    decode,
    encode,
    line_box,
    load_line_cache,
    normalize_line,
)
from charjax.errors import CharjaxError
from charjax.labels import CLASSES
from charjax.line_model import LineModel, greedy_decode, save_line_model
from charjax.line_train import (
    LineTrainConfig,
    _blur,
    _coarsen,
    _shear,
    _stretch,
    _weight,
    create_state,
    run_line_training,
    train_lines,
    train_step,
)
from charjax.models.line import STRIDE, LineNet

SMALL = LineNet(channels=(4, 8, 8, 8), width=16, dilations=(1, 2))


def test_texts_encode_to_labels_and_back():
    text = "Oxygen 2024 B8M5Z"
    labels = encode(text)
    assert labels.min() >= 1 and labels.max() == len(ALPHABET)
    assert decode(np.concatenate([labels, [0, 0]])) == text


def test_encode_refuses_characters_outside_the_classes():
    with pytest.raises(CharjaxError, match="'-'"):
        encode("12-03")


def test_normalize_line_scales_the_ink_box_to_the_line_height_keeping_its_aspect():
    ink = np.zeros((100, 400), np.float32)
    ink[20:60, 50:250] = 1.0  # a 40 x 200 box of ink
    line = normalize_line(ink)
    inner = LINE_HEIGHT - 2 * MARGIN
    assert line.shape == (LINE_HEIGHT, 5 * inner + 2 * MARGIN)
    assert line_box(line) == (MARGIN, MARGIN, MARGIN + 5 * inner, MARGIN + inner)
    assert line[LINE_HEIGHT // 2, LINE_HEIGHT].item() == pytest.approx(1.0, abs=0.01)


def test_normalize_line_of_a_blank_band_is_empty_ink():
    assert not normalize_line(np.zeros((10, 30), np.float32)).any()


def _logits(path: list[int], k: int = len(ALPHABET) + 1) -> np.ndarray:
    out = np.full((len(path), k), -5.0, np.float32)
    out[np.arange(len(path)), path] = 5.0
    return out


def test_greedy_decode_merges_repeats_and_drops_blanks_and_padding():
    a, b = ALPHABET.index("a") + 1, ALPHABET.index("b") + 1
    # a a _ a b b _ | then padding steps past the line's width that would read "b"
    logits = _logits([a, a, 0, a, b, b, 0, b, b])
    text, spans = greedy_decode(logits, width=7 * STRIDE)
    assert text == "aab"
    assert spans == [(0, 1), (3, 3), (4, 5)]


def test_greedy_decode_reads_only_the_allowed_classes():
    o, zero = ALPHABET.index("O") + 1, ALPHABET.index("0") + 1
    logits = _logits([o, 0])
    logits[0, zero] = 4.0  # the digit is the runner-up
    assert greedy_decode(logits, 2 * STRIDE)[0] == "O"
    assert greedy_decode(logits, 2 * STRIDE, allowed=np.arange(10))[0] == "0"


def test_train_step_learns_a_batch_of_lines():
    # Two "lines": a bar and a box, labelled "l" and "o"; the CTC loss on them must fall.
    images = np.zeros((2, LINE_HEIGHT, 32), np.uint8)
    images[0, 4:28, 8:11] = 255
    images[1, 10:28, 8:24] = 255
    images[1, 13:25, 11:21] = 0
    batch = {
        "image": jnp.asarray(images),
        "width": jnp.array([32, 32]),
        "label": jnp.array([[encode("l")[0], 0], [encode("o")[0], 0]]),
        "length": jnp.array([1, 1]),
    }
    config = LineTrainConfig(steps=30, lr=2e-2, warmup=1)
    schedule = optax.constant_schedule(config.lr)
    state = create_state(config, SMALL, schedule)
    step = jax.jit(lambda s, b: train_step(s, b, schedule=schedule))
    losses = []
    for _ in range(config.steps):
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    assert np.isfinite(losses).all()
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])


def test_saved_line_model_loads_and_gives_the_same_logits(tmp_path):
    params = SMALL.init(jax.random.PRNGKey(1), jnp.zeros((1, LINE_HEIGHT, 128, 1)))["params"]
    save_line_model(tmp_path / "m", params, {"val_cer": 0.5}, SMALL)
    loaded = LineModel.load(tmp_path / "m")
    x = np.random.default_rng(0).random((1, LINE_HEIGHT, 128, 1), np.float32)
    want = SMALL.apply({"params": params}, x)
    np.testing.assert_allclose(loaded.model.apply({"params": loaded.params}, x), want, atol=1e-6)
    assert loaded.meta["val_cer"] == 0.5
    ink = np.zeros((40, 200), np.float32)
    ink[10:30, 20:180:9] = 1.0
    (read,) = loaded.read([ink])
    assert read.probs.shape == (len(read.text), len(CLASSES))


def test_loading_something_else_as_a_line_model_says_what_is_wrong(tmp_path):
    with pytest.raises(CharjaxError, match="not a charjax line model"):
        LineModel.load(tmp_path)
    (tmp_path / "meta.json").write_text(json.dumps({"kind": "classifier"}))
    with pytest.raises(CharjaxError, match="no line kind"):
        LineModel.load(tmp_path)


def test_slant_augmentation_shears_about_the_middle_row_and_zero_keeps_the_line():
    images = np.zeros((1, LINE_HEIGHT, 64), np.float32)
    images[0, :, 30] = 1.0  # a vertical bar
    np.testing.assert_array_equal(_shear(jnp.asarray(images), jnp.zeros(1)), images)
    slanted = np.asarray(_shear(jnp.asarray(images), jnp.array([0.25])))
    top, bottom = slanted[0, 0].argmax(), slanted[0, -1].argmax()
    assert top - bottom == pytest.approx(0.25 * (LINE_HEIGHT - 1), abs=1)  # leans right
    assert slanted.sum() == images.sum()  # nothing falls off a line with room either side


def test_weight_augmentation_makes_strokes_bolder_lighter_or_keeps_them():
    images = np.zeros((3, LINE_HEIGHT, 32), np.float32)
    images[:, 8:24, 10:14] = 1.0
    out = np.asarray(_weight(jnp.asarray(images), jnp.array([0, 1, 2])))
    assert out[0].sum() > images[0].sum() > out[1].sum() > 0
    np.testing.assert_array_equal(out[2], images[2])


def test_width_augmentation_scales_the_columns_and_one_keeps_the_line():
    images = np.zeros((3, LINE_HEIGHT, 128), np.float32)
    images[:, 8:24, 10:60] = np.random.default_rng(0).random((3, 16, 50))
    widths, lengths = jnp.array([64, 64, 64]), jnp.array([2, 2, 2])
    out, new_widths = _stretch(jnp.asarray(images), widths, lengths, jnp.array([1.0, 0.5, 1.5]))
    out = np.asarray(out)
    np.testing.assert_allclose(out[0], images[0], atol=1e-6)
    assert list(new_widths) == [64, 32, 96]
    inked = [np.flatnonzero(o.sum(axis=0))[[0, -1]] for o in out]
    # Columns 10-59 scaled (an edge column interpolates between ink and paper).
    assert list(inked[1]) == [5, 29] and list(inked[2]) == [14, 89]
    assert out[1].sum() == pytest.approx(images[1].sum() / 2, rel=0.05)  # ink scales with width


def test_width_augmentation_keeps_lines_in_the_batch_and_two_ctc_steps_per_character():
    images = np.ones((2, LINE_HEIGHT, 128), np.float32)
    # A factor of 4 would overflow the batch's 128 columns; 0.1 would leave the 10
    # characters fewer than 2 output steps each.
    _, widths = _stretch(jnp.asarray(images), jnp.array([100, 100]), jnp.array([1, 10]),
                         jnp.array([4.0, 0.1]))  # fmt: skip
    assert int(widths[0]) == 128 and int(widths[1]) >= 2 * 10 * STRIDE


def test_blur_and_low_resolution_augmentations_spread_a_stroke_and_keep_its_ink():
    images = np.zeros((3, LINE_HEIGHT, 64), np.float32)
    images[:, 8:24, 30:32] = 1.0  # a 2-column bar
    x = jnp.asarray(images)
    blurred = np.asarray(_blur(x, jnp.array([0.0, 0.6, 1.2])))
    coarse = np.asarray(_coarsen(x, jnp.array([1, 2, 3])))
    np.testing.assert_allclose(blurred[0], images[0], atol=1e-6)
    np.testing.assert_allclose(coarse[0], images[0], atol=1e-6)
    for out in (blurred, coarse):
        np.testing.assert_allclose(out.sum(axis=(1, 2)), images[0].sum(), rtol=0.02)
        spread = [np.count_nonzero(row > 0.01) for row in out[:, 16]]
        assert spread[0] == 2 < spread[1] < spread[2]  # wider with sigma and coarseness


def _tiny_cache(n: int = 8) -> dict:
    rng = np.random.default_rng(0)
    labels = np.zeros((n, 4), np.int32)
    labels[:, :2] = rng.integers(1, len(ALPHABET), (n, 2))
    return {"images": rng.integers(0, 256, (n, LINE_HEIGHT, 128), dtype=np.uint8),
            "widths": np.full(n, 128), "labels": labels, "lengths": np.full(n, 2),
            "splits": np.array([0] * (n - 2) + [1, 1])}  # fmt: skip


def test_train_lines_from_a_saved_model_starts_from_its_parameters(tmp_path):
    params = SMALL.init(jax.random.PRNGKey(7), jnp.zeros((1, LINE_HEIGHT, 128, 1)))["params"]
    save_line_model(tmp_path / "start", params, {"val_cer": 0.5}, SMALL)
    start = LineModel.load(tmp_path / "start")
    # A learning rate of 0 (AdamW's decay is scaled by it too) leaves the parameters alone.
    config = LineTrainConfig(steps=2, batch_size=2, lr=0.0, eval_every=100)
    train_lines(config, _tiny_cache(), tmp_path / "run", init=start, progress=False,
                echo=lambda *_: None)  # fmt: skip
    tuned = LineModel.load(tmp_path / "run" / "model")
    assert tuned.model == SMALL and tuned.meta["init"] == str(tmp_path / "start")
    for got, want in zip(jax.tree.leaves(tuned.params), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(got, want)


def test_line_training_from_something_not_a_line_model_stops_before_rendering(tmp_path):
    with pytest.raises(CharjaxError, match="not a charjax line model"):
        run_line_training(tmp_path / "run", LineTrainConfig(), LineDataOptions(lines=10),
                          tmp_path / "cache", init=tmp_path, progress=False)  # fmt: skip
    assert not (tmp_path / "cache").exists()


def test_run_line_training_renders_a_cache_trains_and_saves_a_model_that_loads(tmp_path):
    # One-token lines: most fit the narrowest width bucket, so few programs compile.
    options = LineDataOptions(lines=24, shares=(0.0, 0.5, 0.5), tokens=(1, 1), val_fraction=0.25)
    config = LineTrainConfig(steps=3, batch_size=4, eval_every=100, distort=0.0)
    summary = run_line_training(tmp_path / "run", config, options, tmp_path / "cache",
                                workers=1, progress=False, echo=lambda *_: None)  # fmt: skip
    assert summary["best"]["step"] == 3 and summary["best"]["val_cer"] >= 0
    records = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in records] == [3]
    model = LineModel.load(tmp_path / "run" / "model")
    assert model.meta["train"]["steps"] == 3
    cache = load_line_cache(tmp_path / "cache")
    assert len(cache["widths"]) == len(cache["lengths"]) > 12  # a few lines may be too wide
    assert (cache["lengths"] > 0).all() and (cache["widths"] <= cache["images"].shape[2]).all()


def test_hand_fonts_take_their_share_of_the_lines_and_the_other_kinds_shrink_in_proportion():
    plain = LineDataOptions(lines=1000, shares=(0.6, 0.2, 0.2))
    assert plain.kind_counts() == {"print": 600, "hand": 200, "joined": 200, "fonts": 0}
    with_fonts = LineDataOptions(lines=1000, shares=(0.6, 0.2, 0.2), hand_fonts=("f",),
                                 hand_font_share=0.2)  # fmt: skip
    assert with_fonts.kind_counts() == {"print": 480, "hand": 160, "joined": 160, "fonts": 200}
    with pytest.raises(CharjaxError, match="hand_font_share"):
        LineDataOptions(hand_font_share=1.5)


def test_hand_fonts_leave_out_the_benchmarks_script_families(tmp_path, monkeypatch):
    for name in ("DejaVuSans.ttf", "DejaVuSerif.ttf"):
        shutil.copy(dejavu(name), tmp_path / name)
    # Pretend DejaVu Serif is one of the cursive families the benchmark's script lines use.
    monkeypatch.setattr(lines, "SCRIPT_FAMILIES", ("DejaVu Serif",))
    faces = lines.faces_in((str(tmp_path),))
    assert [f.family for f in faces] == ["DejaVu Sans"]


def test_line_cache_sets_lines_in_the_hand_fonts_given(tmp_path):
    shutil.copy(dejavu("DejaVuSans.ttf"), tmp_path / "DejaVuSans.ttf")
    options = LineDataOptions(lines=6, hand_fonts=[tmp_path], hand_font_share=1.0,
                              tokens=(1, 1), val_fraction=0.0)  # fmt: skip
    cache = build_line_cache(tmp_path / "cache", options, workers=1)
    assert len(cache["lengths"]) == 6 and (cache["widths"] > 2 * MARGIN).all()
    texts = [decode(row) for row in cache["labels"]]
    assert all(text and set(text) <= set(ALPHABET) for text in texts)


def test_extra_fonts_leave_out_the_benchmarks_printed_test_families(tmp_path, monkeypatch):
    for name in ("DejaVuSans.ttf", "DejaVuSerif.ttf"):
        shutil.copy(dejavu(name), tmp_path / name)
    held_out = {"test": frozenset({"DejaVu Serif"})}
    monkeypatch.setattr(lines, "_families_in", lambda split: held_out.get(split, frozenset()))
    assert [f.family for f in lines.faces_in((str(tmp_path),))] == ["DejaVu Sans"]


def test_line_cache_sets_printed_lines_in_the_print_fonts_given(tmp_path, monkeypatch):
    # With no installed fonts, the printed lines can only come from the fonts given.
    monkeypatch.setattr(lines, "faces_for", lambda kind, split="test": ())
    monkeypatch.setattr(lines, "_families_in", lambda split: frozenset())
    shutil.copy(dejavu("DejaVuSans.ttf"), tmp_path / "DejaVuSans.ttf")
    options = LineDataOptions(lines=6, shares=(1.0, 0.0, 0.0), print_fonts=[tmp_path],
                              tokens=(1, 1), val_fraction=0.0)  # fmt: skip
    cache = build_line_cache(tmp_path / "cache", options, workers=1)
    assert len(cache["lengths"]) == 6 and options.print_fonts == (str(tmp_path),)


@pytest.mark.parametrize("option", ["hand_fonts", "print_fonts"])
def test_line_cache_refuses_fonts_with_no_usable_font(tmp_path, option):
    (tmp_path / "fonts").mkdir()
    options = LineDataOptions(lines=6, **{option: (str(tmp_path / "fonts"),)})
    with pytest.raises(CharjaxError, match="no usable font"):
        build_line_cache(tmp_path / "cache", options, workers=1)
    assert not (tmp_path / "cache").exists()
