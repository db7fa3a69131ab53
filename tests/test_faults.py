"""The rough edges of issue 17: blank input, damaged checkpoints, full or read-only disks,
batches with bad files, leftovers of a killed run, and runs that share a workdir."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import dejavu, make_glyph_cache, render_char, run_cli
from PIL import Image, ImageDraw

from charjax.checkpoint import RunCheckpoints, WorkdirLock
from charjax.config import TrainConfig
from charjax.data.cache import load_cache
from charjax.errors import CharjaxError, CharjaxWarning
from charjax.fit import fit
from charjax.labels import CLASSES
from charjax.predict import Predictor, default_checkpoint
from charjax.preprocess import PreprocessSpec, has_ink, load_image, preprocess
from charjax.read import Reader


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


def _tiny_config(glyph_cache, **overrides) -> TrainConfig:
    options = dict(arch="tiny", data=str(glyph_cache), image_size=16, batch_size=62, steps=4,
                   lr=1e-2, augment=0.0, eval_every=0, checkpoint_every=2, log_every=1)  # fmt: skip
    return TrainConfig(**(options | overrides))


def _truncate_largest_array_file(step_dir: Path) -> Path:
    largest = max(step_dir.rglob("d/*"), key=lambda f: f.stat().st_size)
    largest.write_bytes(largest.read_bytes()[: largest.stat().st_size // 2])
    return largest


def test_a_resume_skips_a_damaged_latest_step_and_moves_it_aside(glyph_cache, tmp_path):
    config, workdir = _tiny_config(glyph_cache), tmp_path / "run"
    straight = fit(config, workdir, progress=False, echo=lambda s: None)
    _truncate_largest_array_file(workdir / "checkpoints" / "4")
    said = []
    with pytest.warns(CharjaxWarning, match=r"checkpoint step 4 cannot be restored \(.+\); moved"):
        resumed = fit(config, workdir, progress=False, echo=said.append)
    assert any("from step 2 of 4" in line for line in said)
    assert (workdir / "damaged" / "checkpoints-4").is_dir()  # kept, not deleted
    assert resumed["step"] == 4 and resumed["params_digest"] == straight["params_digest"]
    # The steps run again after the resume replace their first records: no curve doubles back.
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").open()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4]
    assert [r["step"] for r in records] == sorted(r["step"] for r in records)


def test_a_workdir_with_no_step_that_restores_is_refused_and_nothing_moved(glyph_cache, tmp_path):
    config, workdir = _tiny_config(glyph_cache), tmp_path / "run"
    fit(config, workdir, progress=False, echo=lambda s: None)
    for step in ("2", "4"):
        _truncate_largest_array_file(workdir / "checkpoints" / step)
    with pytest.raises(
        CharjaxError, match="no checkpoint in .* can be restored .*step 4: .*step 2"
    ):
        fit(config, workdir, progress=False, echo=lambda s: None)
    assert not (workdir / "damaged").exists()
    WorkdirLock(workdir).release()  # the failed resume let go of the workdir


def test_eval_and_predict_fall_back_from_a_damaged_best_and_say_so(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (best,) = (run / "best").iterdir()
    _truncate_largest_array_file(best / "model")
    render_char("K", size=48).save(tmp_path / "k.png")
    code, out, err = run_cli(capsys, "predict", "--checkpoint", run, tmp_path / "k.png")
    assert code == 0 and out.startswith(str(tmp_path / "k.png"))
    (line,) = err.splitlines()  # one warning, no TensorStore spec, no ignored exceptions
    assert line.startswith(f"charjax: warning: skipped the checkpoint at {best.absolute()}")
    assert line.endswith(f"using {(run / 'checkpoints' / best.name).absolute()}")
    assert best.is_dir()


def test_eval_says_which_checkpoint_and_step_and_counts_blank_images(tiny_run, tmp_path, capsys):
    folder = tmp_path / "letters"
    (folder / "Sample011").mkdir(parents=True)  # A
    render_char("A", size=48).save(folder / "Sample011" / "a.png")
    _paper().save(folder / "Sample011" / "blank.png")
    _dot(18).save(folder / "Sample011" / "click.png")
    code, out, err = run_cli(
        capsys, "eval", "--checkpoint", tiny_run, "--data", f"folder:{folder}", "--json"
    )
    report = json.loads(out)
    assert code == 0 and report["n"] == 1
    assert sorted(report["skipped"]["too little ink to read"]) == [
        "Sample011/blank.png",
        "Sample011/click.png",
    ]
    (step_dir,) = (tiny_run / "best").iterdir()
    assert report["checkpoint_dir"] == str(step_dir.absolute())
    assert report["step"] == int(step_dir.name)
    code, out, err = run_cli(capsys, "eval", "--checkpoint", tiny_run, "--data", f"folder:{folder}")
    assert out.startswith(f"checkpoint {step_dir.absolute()} (step {step_dir.name})")
    assert "not scored, too little ink to read: 2" in out


def test_a_second_train_on_a_busy_workdir_stops_with_one_line(glyph_cache, tmp_path, capsys):
    workdir = tmp_path / "run"
    workdir.mkdir()
    first = WorkdirLock(workdir)  # as a running `charjax train` holds it
    args = ["train", "--arch", "tiny", "--data", glyph_cache, "--image-size", "16",
            "--steps", "2", "--no-progress", "--workdir", workdir]  # fmt: skip
    code, out, err = run_cli(capsys, *args)
    assert code == 2 and "another charjax train is running in" in err
    assert not (workdir / "checkpoints").exists() and not (workdir / "metrics.jsonl").exists()
    first.release()
    lock = WorkdirLock(workdir)  # free again once the first run ends
    lock.release()


def test_leftovers_of_a_killed_save_are_removed_when_the_run_resumes(tmp_path):
    leftover = tmp_path / "checkpoints" / "6.orbax-checkpoint-tmp" / "model.orbax-checkpoint-tmp"
    leftover.mkdir(parents=True)
    (tmp_path / "best" / "6.orbax-checkpoint-tmp").mkdir(parents=True)
    (tmp_path / "checkpoints" / "4" / "meta").mkdir(parents=True)  # a finished step stays
    RunCheckpoints(tmp_path).close()
    assert (
        not leftover.parent.exists() and not (tmp_path / "best" / "6.orbax-checkpoint-tmp").exists()
    )
    assert (tmp_path / "checkpoints" / "4" / "meta").is_dir()


def test_a_killed_dataset_build_leaves_nothing_once_the_next_build_runs(tmp_path):
    old = tmp_path / ".glyphs.tmp-0123abcd"  # what a build killed an hour ago left
    (old / "images.npy").parent.mkdir()
    (old / "images.npy").write_bytes(b"\0" * 1000)
    live = tmp_path / ".glyphs.tmp-4567cdef"  # another build of the same name, writing now
    live.mkdir()
    hour_ago = time.time() - 3600
    os.utime(old / "images.npy", (hour_ago, hour_ago))
    os.utime(old, (hour_ago, hour_ago))
    make_glyph_cache(tmp_path / "glyphs", chars="AB", faces=("DejaVuSans.ttf",) * 2)
    assert not old.exists() and live.exists()
    assert load_cache(tmp_path / "glyphs").meta["num_examples"] == 4


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_under_a_dataset_build_is_one_line_and_leaves_nothing(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(np, "save", _no_space)  # the cache's arrays: the first big write
    faces = [dejavu(f) for f in ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf")]
    args = ["data", "fonts", "--no-system-fonts", "--out", tmp_path / "fonts", "--no-progress"]
    code, out, err = run_cli(capsys, *args, *[a for f in faces for a in ("--fonts", f)])
    assert code == 2 and err.splitlines() == ["charjax: error: no space left on the device"]
    assert list(tmp_path.iterdir()) == []


def test_a_read_only_workdir_is_one_line(glyph_cache, tmp_path, capsys, monkeypatch):
    read_only = tmp_path / "ro"
    mkdir = Path.mkdir

    def refuse_under_ro(self, *args, **kwargs):  # as a read-only mount answers, even root
        if self.is_relative_to(read_only):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refuse_under_ro)
    args = ["train", "--arch", "tiny", "--data", glyph_cache, "--image-size", "16",
            "--steps", "2", "--no-progress", "--workdir", read_only / "run"]  # fmt: skip
    code, out, err = run_cli(capsys, *args)
    assert code == 2
    assert err.splitlines() == [
        f"charjax: error: {read_only / 'run'}: the file system is read-only"
    ]


@pytest.fixture
def tiny_filesystem(tmp_path):
    """A 2 MB tmpfs, nearly full: a real full disk (needs root and mount; else skips)."""
    mount = tmp_path / "full"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                          capture_output=True)  # fmt: skip
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    (mount / "filler").write_bytes(b"\0" * (1900 * 1024))
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_training_into_a_full_disk_is_one_line(glyph_cache, tiny_filesystem):
    args = ["train", "--arch", "tiny", "--data", glyph_cache, "--image-size", "16",
            "--batch-size", "62", "--steps", "4", "--checkpoint-every", "2", "--eval-every", "0",
            "--no-progress", "--workdir", tiny_filesystem / "run"]  # fmt: skip
    run = subprocess.run([sys.executable, "-m", "charjax.cli.main", *map(str, args)],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 2
    assert run.stderr.splitlines()[-1] == "charjax: error: no space left on the device"
    assert "Traceback" not in run.stderr and "absl" not in run.stderr
    assert len(run.stderr.splitlines()) == 2  # "Training tiny on ..." and the error


def test_read_finds_no_text_in_a_click_rather_than_an_o(bundled):
    reader = Reader(bundled)
    for image in (_dot(18), _dot(40), _paper()):
        reading = reader.read(image)
        assert reading.text == "" and reading.note.startswith("no text found")
    assert reader.read(_dot(18)).note == "no text found (too little ink to read)"


def test_ctrl_c_saves_at_the_next_step_says_so_and_the_run_resumes(glyph_cache, tmp_path):
    workdir = tmp_path / "run"
    args = [sys.executable, "-m", "charjax.cli.main", "train", "--arch", "tiny", "--data",
            str(glyph_cache), "--image-size", "16", "--batch-size", "32", "--steps", "100000",
            "--eval-every", "0", "--checkpoint-every", "0", "--log-every", "5", "--no-progress",
            "--workdir", str(workdir)]  # fmt: skip
    run = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    metrics, deadline = workdir / "metrics.jsonl", time.time() + 240
    while not (metrics.exists() and metrics.stat().st_size):  # until a step is logged
        assert run.poll() is None, run.stderr.read()
        assert time.time() < deadline, "no step was logged in time"
        time.sleep(0.05)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 130, err
    stopped = [line for line in err.splitlines() if line.startswith("Stopped at step")]
    assert len(stopped) == 1 and stopped[0].endswith("Run the same command to resume."), err
    step = int(stopped[0].split()[3].rstrip(";"))
    saved = [int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()]
    assert max(saved) == step  # the state at that step is saved
    assert "Traceback" not in err and err.splitlines()[-1] == "charjax: interrupted", err
    resumed = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:  # the same command resumes at that step (its first line says so)
        assert resumed.stderr.readline().startswith(f"Resuming {workdir} from step {step} of")
    finally:
        resumed.kill()
        resumed.wait()
