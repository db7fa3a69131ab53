"""The bundled default model: found without a path, reads printed glyphs, used by the CLI."""

import json

import numpy as np
import pytest
from conftest import render_char

import charjax.predict
from charjax.cli.main import main
from charjax.predict import default_checkpoint, load

# Characters whose shape tells them apart in any face (no c/C, o/O, l/I/1, 0/O look-alikes).
SAMPLE = "37AEGHKRabdefghknrt"


@pytest.fixture(scope="module")
def predictor():
    return load()  # no argument: the bundled model


def test_bundled_model_is_small_and_has_its_config(predictor):
    size = sum(p.stat().st_size for p in default_checkpoint().rglob("*") if p.is_file())
    assert size < 5e6  # a few MB at most: it ships inside the wheel
    assert predictor.config.arch in charjax.models.MODELS
    assert predictor.image_size == 32


def test_bundled_model_reads_rendered_dejavu_glyphs(predictor):
    images = [
        render_char(c, face) for c in SAMPLE for face in ("DejaVuSans.ttf", "DejaVuSerif.ttf")
    ]
    truth = [c for c in SAMPLE for _ in range(2)]
    guesses = [p.top1 for p in predictor.predict(images, top_k=3)]
    right = np.mean([g == t for g, t in zip(guesses, truth, strict=True)])
    assert right >= 0.9, list(zip(truth, guesses, strict=True))


def test_predict_cli_without_checkpoint_uses_the_bundled_model(tmp_path, capsys):
    path = tmp_path / "k.png"
    render_char("k").save(path)
    main(["predict", "--json", "--top-k", "2", str(path)])
    out = json.loads(capsys.readouterr().out)
    assert out["file"] == str(path) and out["top"][0]["char"] == "k"


def test_eval_cli_without_checkpoint_uses_the_bundled_model(tmp_path, capsys):
    for c in "Kk4":
        folder = tmp_path / f"Sample{charjax.labels.char_to_index(c) + 1:03d}"
        folder.mkdir()
        render_char(c, "DejaVuSerif.ttf").save(folder / "a.png")
    main(["eval", "--data", f"folder:{tmp_path}", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 3 and report["top1_case_insensitive"] >= 2 / 3


def test_without_a_bundled_model_the_error_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(charjax.predict, "PRETRAINED_DIR", tmp_path)
    with pytest.raises(charjax.errors.CharjaxError, match="make pretrained"):
        load()
