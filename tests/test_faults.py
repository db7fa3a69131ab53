"""The rough edges of issue 17: blank input, damaged checkpoints, full or read-only disks,
batches with bad files, leftovers of a killed run, and runs that share a workdir."""

import json

import numpy as np
import pytest
from conftest import render_char, run_cli
from PIL import Image, ImageDraw

from charjax.config import TrainConfig
from charjax.errors import CharjaxError
from charjax.labels import CLASSES
from charjax.predict import Predictor, default_checkpoint
from charjax.preprocess import PreprocessSpec, has_ink, load_image, preprocess


@pytest.fixture(scope="module")
def bundled():
    return Predictor.load(default_checkpoint())


def _paper(size=(400, 400)) -> Image.Image:
    return Image.new("L", size, 255)


def _dot(diameter: int) -> Image.Image:
    """A single click of a round pen on white paper, as the GUI canvas draws it."""
    image = _paper()
    ImageDraw.Draw(image).ellipse([100, 100, 100 + diameter, 100 + diameter], fill=0)
    return image


def _blank_images() -> dict[str, Image.Image]:
    return {
        "white": _paper(),
        "black": Image.new("L", (64, 64), 0),
        "one pixel": Image.new("L", (1, 1), 255),
        "grey RGB": Image.new("RGB", (50, 30), (120, 130, 140)),
        "a click": _dot(18),
        "a speck": _dot(2),
    }


@pytest.mark.parametrize("size", [16, 32])
def test_every_character_has_ink_and_blank_paper_or_a_dot_has_not(size):
    spec = PreprocessSpec(size=size)
    for face in ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf"):
        for char in CLASSES:
            assert has_ink(preprocess(render_char(char, face), spec)), (char, face)
    for name, image in _blank_images().items():
        assert not has_ink(preprocess(image, spec)), name


def test_predict_says_blank_instead_of_guessing(bundled):
    images = list(_blank_images().values()) + [render_char("A", size=48)]
    preds = bundled.predict(images, top_k=3)
    assert [p.blank for p in preds] == [True] * (len(images) - 1) + [False]
    assert preds[0].chars == () and preds[0].top1 == ""
    assert preds[0].as_dict() == {"blank": True, "top": []}
    assert preds[-1].top1 == "A" and len(preds[-1].chars) == 3


def test_predict_answers_the_readable_files_and_reports_the_rest(tmp_path, capsys):
    render_char("K", size=48).save(tmp_path / "k.png")
    _paper().save(tmp_path / "white.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    files = [tmp_path / n for n in ("broken.png", "k.png", "missing.png", "white.png")]
    code, out, err = run_cli(capsys, "predict", *files)
    assert code == 2
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{files[1]}: K ")
    assert lines[1] == f"{files[3]}: too little ink to read"
    assert "broken.png" in err and "missing.png" in err and "2 of 4 images" in err
    assert "Traceback" not in err

    code, out, err = run_cli(capsys, "predict", "--json", *files)
    records = [json.loads(line) for line in out.splitlines()]
    assert code == 2 and [r["file"] for r in records] == [str(f) for f in files]
    assert "error" in records[0] and "error" in records[2]
    assert records[1]["top"][0]["char"] == "K" and records[3] == {
        "file": str(files[3]),
        "blank": True,
        "top": [],
    }


def test_an_animated_image_is_refused_not_read_at_frame_one(tmp_path):
    frames = [_paper((32, 32)), Image.new("L", (32, 32), 0)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    with pytest.raises(CharjaxError, match="2 frames"):
        load_image(tmp_path / "anim.gif")
    frames[0].save(tmp_path / "still.gif")
    assert load_image(tmp_path / "still.gif").size == (32, 32)


def test_a_huge_image_is_read_without_a_raw_pillow_warning(tmp_path, monkeypatch, recwarn):
    # Pillow's limit scaled down, so a small file stands in for a 10000 x 10000 photo.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    _paper((40, 40)).save(tmp_path / "large.png")  # 1600 px: Pillow would warn
    _paper((50, 50)).save(tmp_path / "bomb.png")  # 2500 px: Pillow refuses
    assert load_image(tmp_path / "large.png").size == (40, 40)
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]
    with pytest.raises(CharjaxError, match="more than 2,000 pixels"):
        load_image(tmp_path / "bomb.png")
    assert np.all(preprocess(load_image(tmp_path / "large.png")) == 0)


def test_log_every_zero_is_refused_with_a_message_zero_does_not_satisfy():
    with pytest.raises(CharjaxError, match="log interval must be at least 1 step, got 0"):
        TrainConfig(log_every=0)
    with pytest.raises(CharjaxError, match=r"must be >= 0 steps .* got -1 and 500"):
        TrainConfig(eval_every=-1)
    assert TrainConfig(eval_every=0, checkpoint_every=0, log_every=1).log_every == 1
