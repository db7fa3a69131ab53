"""Restricting answers to a character set: the parser, the renormalisation, and the
Predictor, `charjax predict` and `charjax eval` using them."""

import json

import numpy as np
import pytest
from conftest import render_char, run_cli

from charjax.data.cache import load_cache
from charjax.errors import CharjaxError
from charjax.evaluate import evaluate_checkpoint
from charjax.labels import CLASSES, parse_charset, restrict
from charjax.predict import load


def chars(indices) -> str:
    return "".join(CLASSES[i] for i in indices)


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("digits", "0123456789"),
        ("upper", "ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
        ("lower", "abcdefghijklmnopqrstuvwxyz"),
        ("letters", CLASSES[10:]),
        ("alnum", CLASSES),
        ("0-9A-F", "0123456789ABCDEF"),
        ("FA-C3", "3ABCF"),  # a single, a range, a single; sorted by class index
        ("xx-zX", "Xxyz"),  # duplicates once
        (" 0-1 ", "01"),  # surrounding blanks from a form or a shell are ignored
    ],
)
def test_parse_charset_reads_names_ranges_and_characters(spec, expected):
    assert chars(parse_charset(spec)) == expected


@pytest.mark.parametrize(
    "spec, says",
    [
        ("", "empty character set"),
        ("   ", "empty character set"),
        ("0-9#", "'#' is not one of the 62 classes"),
        ("9-0", "range 9-0 must run forward"),
        ("A-z", "range A-z must run forward within 0-9, A-Z or a-z"),
        ("-", "'-' is not one of the 62 classes"),
    ],
)
def test_parse_charset_refuses_what_it_cannot_read_in_words(spec, says):
    with pytest.raises(CharjaxError, match="digits, upper, lower|forward") as err:
        parse_charset(spec)
    assert says in str(err.value)


def test_restrict_renormalises_over_the_allowed_classes_only():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, len(CLASSES)))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    allowed = parse_charset("0-9A-F")
    out = restrict(probs, allowed)
    outside = np.setdiff1d(np.arange(len(CLASSES)), allowed)
    assert (out[:, outside] == 0).all()
    np.testing.assert_allclose(out.sum(1), 1.0, rtol=1e-6)
    # Within the set, the ratios (so the ranking) are the model's own.
    ratio = out[:, allowed] / probs[:, allowed]
    np.testing.assert_allclose(ratio, ratio[:, :1] * np.ones_like(ratio), rtol=1e-5)


def test_restrict_gives_a_uniform_row_when_the_set_got_no_probability_at_all():
    probs = np.zeros((1, len(CLASSES)), np.float32)
    probs[0, CLASSES.index("x")] = 1.0  # float32 softmax underflowed everywhere else
    out = restrict(probs, parse_charset("digits"))
    np.testing.assert_allclose(out[0, :10], 0.1)
    assert out[0, 10:].sum() == 0


def test_predictor_answers_only_from_the_charset(tiny_run):
    predictor = load(tiny_run)
    images = [render_char(c) for c in "7bQ"]
    full = predictor.probabilities(predictor.preprocess(images))
    for pred, row in zip(predictor.predict(images, top_k=5, charset="digits"), full, strict=True):
        assert len(pred.chars) == 5 and set(pred.chars) <= set("0123456789")
        digits = row[:10] / row[:10].sum()
        best = np.argsort(-digits, kind="stable")[:5]
        assert pred.chars == tuple(CLASSES[i] for i in best)
        np.testing.assert_allclose(pred.probs, digits[best], rtol=1e-5)
    # Fewer allowed classes than top_k: that many guesses, the whole probability among them.
    (two,) = predictor.predict(images[:1], top_k=5, charset="AB")
    assert sorted(two.chars) == ["A", "B"] and sum(two.probs) == pytest.approx(1.0)


def test_cli_predict_charset(tiny_run, tmp_path, capsys):
    path = tmp_path / "q.png"
    render_char("Q").save(path)
    code, out, _ = run_cli(
        capsys, "predict", "--checkpoint", tiny_run, "--json", "--charset", "upper", path
    )
    assert code == 0
    top = json.loads(out)["top"]
    assert len(top) == 5 and all(t["char"] in CLASSES[10:36] for t in top)


def test_cli_bad_charset_is_one_line_and_exit_2_before_loading_anything(tmp_path, capsys):
    for command in ("predict", "eval"):
        args = [command, "--checkpoint", tmp_path / "not-a-run", "--charset", "0-9#"]
        code, out, err = run_cli(capsys, *args, *([tmp_path / "x.png"] * (command == "predict")))
        assert code == 2 and out == ""
        assert err.startswith("charjax: error: character set '0-9#'") and err.count("\n") == 1


def test_eval_charset_scores_the_restricted_answers_on_the_images_in_the_set(
    tiny_run, glyph_cache, capsys
):
    report = evaluate_checkpoint(tiny_run, data=str(glyph_cache), charset="digits")
    arrays = load_cache(glyph_cache).arrays("test")
    digits = arrays["label"] < 10
    n_in, n_out = int(digits.sum()), int((~digits).sum())
    assert n_in and n_out  # the test split holds both, or this test proves nothing
    assert (report["n"], report["excluded"], report["charset"]) == (n_in, n_out, "digits")
    assert set(report["per_class"]) <= set("0123456789")
    predictor = load(tiny_run)
    probs = predictor.probabilities(arrays["image"][digits])
    hits = probs[:, :10].argmax(1) == arrays["label"][digits]
    assert report["top1"] == pytest.approx(hits.mean())
    # Restricting never turns a right answer wrong: at least the unrestricted hits.
    assert report["top1"] >= (probs.argmax(1) == arrays["label"][digits]).mean()
    code, out, _ = run_cli(
        capsys, "eval", "--checkpoint", tiny_run, "--data", glyph_cache, "--charset", "digits"
    )
    assert code == 0
    assert f"{n_in} images with a label in --charset digits ({n_out} others left out)" in out


def test_eval_charset_with_no_image_in_the_set_is_an_error(tiny_run, tmp_path, capsys):
    folder = tmp_path / "samples" / "Sample001"  # only zeros
    folder.mkdir(parents=True)
    render_char("0").save(folder / "img001-00001.png")
    code, _, err = run_cli(
        capsys, "eval", "--checkpoint", tiny_run, "--data", f"folder:{tmp_path / 'samples'}",
        "--charset", "upper",
    )  # fmt: skip
    assert code == 2 and "no image in this data has a label in --charset 'upper'" in err
