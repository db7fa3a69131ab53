"""`charjax walk`, `sample` and `reconstruct`: frames, videos read back, grids, bad input."""

import imageio_ffmpeg
import numpy as np
import pytest
from conftest import render_char
from PIL import Image
from test_generative import run_cli, trained_runs

from charjax.generate import Generator
from charjax.predict import Predictor
from charjax.viz.walk import FrameRenderer, WalkOptions, collect_keyframes, make_walk


@pytest.fixture(scope="module")
def runs(glyph_cache, tmp_path_factory):
    return trained_runs(glyph_cache, tmp_path_factory)  # the ones test_generative.py uses


@pytest.fixture(scope="module")
def letters(tmp_path_factory):
    """Two image files: A in DejaVu Sans and b in DejaVu Serif, dark on white."""
    root = tmp_path_factory.mktemp("letters")
    render_char("A").save(root / "A.png")
    render_char("b", "DejaVuSerif.ttf").save(root / "b.png")
    return [root / "A.png", root / "b.png"]


# moviepy starts ffmpeg with fork + exec; the child runs no Python, so JAX's fork warning is moot.
video = pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")


def _read_video(path):
    """(meta, frames) of a video as ffmpeg decodes it: every frame, not a duration estimate."""
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    frames = [np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in reader]
    return meta, frames


@pytest.mark.parametrize("interp", ["linear", "slerp"])
def test_segment_ends_are_the_decoded_keyframes(runs, letters, interp):
    gen = Generator.load(runs["vae"])
    keyframes = collect_keyframes(gen, letters, WalkOptions(chars="Z3"))
    assert [k.name for k in keyframes] == ["A", "b", "Z", "3"]
    walk = make_walk(gen, keyframes, steps=5, interp=interp)
    assert len(walk.glyphs) == 3 * 5 + 1
    decoded = gen.decode(gen.encode(np.stack([k.image for k in keyframes])))
    # Frame i * steps starts segment i (and ends segment i - 1).
    np.testing.assert_allclose(walk.glyphs[::5], decoded, atol=1e-5)
    assert list(walk.segment[::5]) == [0, 1, 2, 2] and list(walk.t[::5]) == [0, 0, 0, 1]
    assert not np.allclose(walk.glyphs[1], walk.glyphs[0])  # it moves in between


@video
def test_mp4_has_the_expected_frames_size_and_fps(runs, letters, tmp_path, capsys):
    out = tmp_path / "walk.mp4"
    code, _, err = run_cli(
        capsys, "walk", "--checkpoint", runs["vae"], *letters, "--chars", "Z", "--fps", 8,
        "--seconds-per-step", 0.5, "--size", 64, "--out", out,
    )  # fmt: skip
    assert code == 0, err
    meta, frames = _read_video(out)
    width, height = FrameRenderer(64).shape
    assert meta["codec"] == "h264" and meta["fps"] == 8
    assert tuple(meta["size"]) == (width, height)
    assert len(frames) == 2 * 4 + 1  # two segments of 0.5 s at 8 fps, and the last glyph
    # The first frame on screen is the first glyph, drawn dark on white (H.264 is lossy).
    gen = Generator.load(runs["vae"])
    keyframes = collect_keyframes(gen, letters, WalkOptions(chars="Z"))
    walk = make_walk(gen, keyframes, steps=4)
    expected = FrameRenderer(64)(walk, 0).astype(np.float32)
    assert np.abs(frames[0].astype(np.float32) - expected).mean() < 4.0


@video
def test_gif_and_png_strip(runs, tmp_path, capsys):
    gif, png = tmp_path / "walk.gif", tmp_path / "walk.png"
    args = ["walk", "--checkpoint", runs["cvae"], "--chars", "A3b", "--random", "1"]
    code, _, err = run_cli(capsys, *args, "--fps", 5, "--size", 64, "--out", gif, "--no-progress")
    assert code == 0, err
    with Image.open(gif) as im:
        assert im.n_frames == 3 * 3 * 5 + 1 and im.size == FrameRenderer(64).shape
    code, _, err = run_cli(capsys, *args, "--out", png)
    assert code == 0, err
    w, h = FrameRenderer(128).shape
    with Image.open(png) as im:  # 3 segments x 9 frames, 2 px apart
        assert im.size == (9 * (w + 2) - 2, 3 * (h + 2) - 2)


def test_classifier_captions_each_frame(runs, letters):
    gen, clf = Generator.load(runs["vae"]), Predictor.load(runs["classifier"])
    walk = make_walk(gen, collect_keyframes(gen, letters), steps=3, classifier=clf)
    assert len(walk.predictions) == len(walk.glyphs) == 4
    # Each caption is what `charjax predict` says of the frame as a person sees it.
    paper = [np.uint8(255 - np.rint(g * 255)) for g in walk.glyphs]
    expected = [p.top1 for p in clf.predict(paper, top_k=1)]
    assert [c.split()[0] for c in walk.predictions] == expected
    assert all(c.endswith("%") for c in walk.predictions)


def test_sample_grid_and_char_conditioning(runs, tmp_path, capsys):
    code, out, err = run_cli(capsys, "sample", "--checkpoint", runs["vae"], "-n", 10,
                             "--out", tmp_path / "vae.png")  # fmt: skip
    assert code == 0, err
    assert '"grid": [4, 3]' in out
    with Image.open(tmp_path / "vae.png") as im:
        assert im.size == (4 * 66 + 2, 3 * 66 + 2)  # 64 px cells, 2 px gaps
    grids = {}
    for char in "AB":
        path = tmp_path / f"{char}.png"
        code, _, err = run_cli(capsys, "sample", "--checkpoint", runs["cvae"], "--char", char,
                               "-n", 4, "--seed", 3, "--out", path)  # fmt: skip
        assert code == 0, err
        grids[char] = np.asarray(Image.open(path), np.float32)
    assert grids["A"].shape == grids["B"].shape
    assert np.abs(grids["A"] - grids["B"]).mean() > 0.5  # same codes, another class


def test_reconstruct_puts_inputs_beside_outputs(runs, letters, tmp_path, capsys):
    out = tmp_path / "recon.png"
    code, stdout, err = run_cli(capsys, "reconstruct", "--checkpoint", runs["vae"], *letters,
                                "--out", out)  # fmt: skip
    assert code == 0, err
    with Image.open(out) as im:
        assert im.size == (4 * 66 + 2, 66 + 2)  # A, A', b, b'
        first = np.asarray(im)[2:66, 2:66]
    assert first.min() < 64 and np.median(first) > 200  # the input: dark ink on white paper
    assert '"mse"' in stdout


def _one_clean_error(code, err):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("charjax: error:"), err
    assert "Traceback" not in err


def test_bad_inputs_give_one_line_and_exit_2(runs, letters, tmp_path, capsys):
    (tmp_path / "not_an_image.png").write_text("hello")
    vae, cvae, clf = runs["vae"], runs["cvae"], runs["classifier"]
    out = ["--out", tmp_path / "x.mp4"]
    bad_image, png = tmp_path / "not_an_image.png", ["--out", tmp_path / "x.png"]
    cases = [
        ("holds a classifier", "walk", "--checkpoint", clf, "--chars", "AB", *out),
        ("cannot read image", "walk", "--checkpoint", vae, bad_image, letters[0], *out),
        ("no such image", "walk", "--checkpoint", vae, tmp_path / "missing.png", *out),
        ("'%' is not one of", "walk", "--checkpoint", vae, "--chars", "A%", *out),
        ("at least two glyphs", "walk", "--checkpoint", vae, "--chars", "A", *out),
        ("written as", "walk", "--checkpoint", vae, "--chars", "AB", "--out", tmp_path / "x.avi"),
        ("needs the class of each", "walk", "--checkpoint", cvae, *letters, *out),
        ("--char needs a class-conditional", "sample", "--checkpoint", vae, "--char", "A", *png),
        ("--char: 'é'", "sample", "--checkpoint", cvae, "--char", "é", *png),
        ("not an autoencoder", "reconstruct", "--checkpoint", clf, letters[0], *png),
        ("cannot read image", "reconstruct", "--checkpoint", vae, bad_image, *png),
    ]
    for expected, *args in cases:
        code, _, err = run_cli(capsys, *args)
        _one_clean_error(code, err)
        assert expected in err, (expected, err)
