"""train -> eval -> predict through the command line, and what bad input gets back."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import render_char, run_cli
from PIL import Image, ImageOps

from charjax.config import TrainConfig
from charjax.data.cache import load_cache
from charjax.evaluate import accuracy_report
from charjax.fit import fit
from charjax.labels import CLASSES
from charjax.predict import load


@pytest.fixture(scope="module")
def trained_run(glyph_cache, tmp_path_factory):
    """A tiny model trained without augmentation until it knows its training fonts."""
    workdir = tmp_path_factory.mktemp("runs") / "tiny"
    config = TrainConfig(
        arch="tiny",
        data=str(glyph_cache),
        image_size=16,
        batch_size=62,
        steps=400,
        lr=1e-2,
        augment=0.0,
        eval_every=0,
        label_smoothing=0.0,
    )
    fit(config, workdir, progress=False, echo=lambda s: None)
    return workdir


def test_train_eval_predict_end_to_end(glyph_cache, tmp_path):
    workdir = tmp_path / "run"
    cmd = [sys.executable, "-m", "charjax.cli.main"]
    train = subprocess.run(
        [
            *cmd,
            "train",
            "--arch",
            "tiny",
            "--data",
            str(glyph_cache),
            "--image-size",
            "16",
            "--batch-size",
            "32",
            "--steps",
            "30",
            "--workdir",
            str(workdir),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert train.returncode == 0, train.stderr
    assert json.loads(train.stdout)["step"] == 30
    evaluated = subprocess.run(
        [*cmd, "eval", "--checkpoint", str(workdir), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)  # exactly one JSON object
    assert report["n"] == 31  # the test split: half of the held-out face's 62 glyphs
    for k in ("top1", "top5", "top1_case_insensitive"):
        assert 0.0 <= report[k] <= 1.0
    assert report["top1"] <= report["top1_case_insensitive"] and report["top1"] <= report["top5"]
    assert set(report["per_class"]) <= set(CLASSES)
    render_char("A").save(tmp_path / "A.png")
    predicted = subprocess.run(
        [
            *cmd,
            "predict",
            "--checkpoint",
            str(workdir),
            "--json",
            "--top-k",
            "3",
            str(tmp_path / "A.png"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert predicted.returncode == 0, predicted.stderr
    line = json.loads(predicted.stdout)
    assert line["file"].endswith("A.png") and len(line["top"]) == 3


def test_accuracy_report_on_a_known_answer():
    labels = np.array([0, 10, 36, 5])  # '0', 'A', 'a', '5'
    guesses = np.array([0, 36, 36, 6])  # right, 'a' for 'A' (right ignoring case), right, wrong
    probs = np.full((4, 62), 0.001, np.float32)
    probs[np.arange(4), guesses] = 0.9
    probs[[1, 3], [10, 5]] = 0.05  # the true classes of the two misses come second
    report = accuracy_report(probs, labels)
    assert report["n"] == 4
    assert report["top1"] == 0.5
    assert report["top1_case_insensitive"] == 0.75
    assert report["top5"] == 1.0
    assert report["per_class"] == {"0": 1.0, "5": 0.0, "A": 0.0, "a": 1.0}
    assert np.asarray(report["confusion"]).sum() == 4


def test_eval_reports_what_the_predictor_computes(trained_run, glyph_cache, capsys):
    code, out, _ = run_cli(
        capsys, "eval", "--checkpoint", str(trained_run), "--split", "train", "--json"
    )
    assert code == 0
    report = json.loads(out)
    arrays = load_cache(glyph_cache).arrays("train")
    probs = load(trained_run).probabilities(arrays["image"])
    assert report["n"] == len(arrays["label"]) == 186
    assert report["top1"] == pytest.approx(float((probs.argmax(1) == arrays["label"]).mean()))
    assert report["top1"] > 0.3  # well above chance (1/62): it learned its training fonts


def test_predict_agrees_across_png_jpeg_and_rgba(trained_run, tmp_path):
    glyph = render_char("K", "DejaVuSans.ttf")
    glyph.save(tmp_path / "k.png")
    glyph.convert("RGB").save(tmp_path / "k.jpg", quality=95)
    rgba = Image.new("RGBA", glyph.size, (0, 0, 0, 0))  # ink on a transparent background
    rgba.putalpha(ImageOps.invert(glyph))
    rgba.save(tmp_path / "k_rgba.png")
    predictor = load(trained_run)
    preds = predictor.predict([tmp_path / "k.png", tmp_path / "k.jpg", tmp_path / "k_rgba.png"])
    assert len({p.top1 for p in preds}) == 1
    np.testing.assert_allclose(preds[0].probs, preds[1].probs, atol=0.02)
    np.testing.assert_allclose(preds[0].probs, preds[2].probs, atol=1e-6)
    assert all(len(p.chars) == 5 for p in preds)


def _one_clean_error(code, err):
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("charjax: error:"), err
    assert "Traceback" not in err


def test_bad_inputs_give_one_line_and_no_traceback(trained_run, glyph_cache, tmp_path, capsys):
    (tmp_path / "not_an_image.png").write_text("hello")
    (tmp_path / "empty").mkdir()
    corrupt = tmp_path / "corrupt"
    shutil.copytree(trained_run, corrupt)
    for f in corrupt.rglob("*"):  # best/ and checkpoints/: a damaged best/ falls back
        if f.is_file() and "model" in f.parts:
            f.write_bytes(b"garbage")
    cases = [
        (
            "train",
            "--arch",
            "nope",
            "--data",
            str(glyph_cache),
            "--image-size",
            "16",
            "--workdir",
            str(tmp_path / "w"),
        ),
        ("train", "--schedule", "bogus", "--workdir", str(tmp_path / "w")),
        ("predict", "--checkpoint", str(tmp_path / "missing"), "x.png"),
        ("predict", "--checkpoint", str(corrupt), str(tmp_path / "not_an_image.png")),
        ("predict", "--checkpoint", str(trained_run), str(tmp_path / "not_an_image.png")),
        ("predict", "--checkpoint", str(trained_run), str(tmp_path / "no_such.png")),
        ("eval", "--checkpoint", str(trained_run), "--data", f"folder:{tmp_path / 'empty'}"),
        ("eval", "--checkpoint", str(tmp_path / "empty")),
    ]
    for args in cases:
        _one_clean_error(*run_cli(capsys, *args)[::2])
