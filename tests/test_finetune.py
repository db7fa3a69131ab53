"""Fine-tuning (`charjax train --init-from`): the start state, freezing, the config it gets,
small data of the user's own with a replay, and the refusals.

The source run is conftest's `tiny_run` (16 px, 30 steps); fine-tuning runs are a few steps
of the same `tiny` model, so every test runs the real loop.
"""

import dataclasses
import json
import shutil

import jax
import numpy as np
import pytest
from conftest import render_char, run_cli

from charjax import finetune
from charjax.checkpoint import load_for_inference
from charjax.config import TrainConfig
from charjax.data.sources import folder_cache, hold_back_one_per_class
from charjax.errors import CharjaxError
from charjax.finetune import FINETUNE, finetune_config
from charjax.fit import fit
from charjax.labels import CLASSES, sample_dir_name
from charjax.step import head_labels

QUIET = lambda s: None


def _options(**kw) -> dict:
    """Every TrainConfig field at its default, as the CLI hands them over."""
    return {**TrainConfig().to_dict(), **kw}


def _finetune(source, data, workdir, **kw):
    config = TrainConfig(
        arch="tiny", image_size=16, data=str(data), init_from=str(source), batch_size=62,
        augment=0.0, eval_every=0, **{"steps": 3, "lr": 1e-2, **kw},
    )  # fmt: skip
    fit(config, workdir, progress=False, echo=QUIET)
    return load_for_inference(workdir)


def _params(run):
    return load_for_inference(run)[0]["params"]


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_starts_from_the_source_params(tiny_run, glyph_cache, tmp_path, ema):
    # A learning rate of ~0 leaves the start state visible at the end: the source's arrays
    # (with --ema, the saved model is the average, which starts at the source too).
    variables, meta = _finetune(tiny_run, glyph_cache, tmp_path / "ft", lr=1e-12, ema=ema)
    source = _params(tiny_run)
    diffs = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), variables["params"], source)
    assert max(jax.tree.leaves(diffs)) < 1e-6
    recorded = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert recorded["config"]["init_from"] == str(tiny_run)
    assert recorded["init_from"]["step"] == 30
    assert meta["init_from"]["path"].endswith("30")


def test_freeze_backbone_updates_only_the_output_layer(tiny_run, glyph_cache, tmp_path):
    variables, _ = _finetune(tiny_run, glyph_cache, tmp_path / "ft", freeze="backbone")
    source = _params(tiny_run)
    labels = head_labels(source)
    moved = jax.tree.map(lambda a, b: bool(np.any(a != b)), variables["params"], source)
    flat = dict(zip(jax.tree.leaves(labels), jax.tree.leaves(moved), strict=True))
    assert set(jax.tree.leaves(labels)) == {"train", "frozen"}
    pairs = list(zip(jax.tree.leaves(labels), jax.tree.leaves(moved), strict=True))
    assert all(m for lab, m in pairs if lab == "train") and flat
    assert not any(m for lab, m in pairs if lab == "frozen")


def test_config_inherits_the_model_and_takes_finetuning_defaults(tiny_run):
    options = _options(init_from=str(tiny_run), lr=0.02)
    config = finetune_config(options, explicit={"init_from", "lr"}, say=QUIET)
    assert (config.arch, config.image_size) == ("tiny", 16)  # from the source, not the defaults
    assert config.lr == 0.02  # given, so kept
    assert (config.steps, config.batch_size, config.warmup) == (
        FINETUNE.steps,
        FINETUNE.batch_size,
        FINETUNE.warmup,
    )
    config = finetune_config(
        _options(init_from=str(tiny_run), epochs=2.0), {"init_from", "epochs"}, QUIET
    )
    assert config.steps is None and config.epochs == 2.0


def test_an_option_that_clashes_with_the_source_is_refused(tiny_run):
    with pytest.raises(CharjaxError, match="--arch cnn-small clashes"):
        finetune_config(
            _options(init_from=str(tiny_run), arch="cnn-small"), {"init_from", "arch"}, QUIET
        )


def test_same_command_resumes_a_finetuning_run(
    tiny_run, glyph_cache, tmp_path, capsys, monkeypatch
):
    # The small test set gets the replay default; replaying itself keeps the test from building
    # the font dataset of every font on the machine (minutes where many fonts are installed).
    monkeypatch.setattr(
        finetune, "FINETUNE", dataclasses.replace(FINETUNE, replay=str(glyph_cache))
    )
    args = ["train", "--init-from", tiny_run, "--data", glyph_cache, "--workdir", tmp_path / "ft"]
    args += ["--data-dir", tmp_path / "data"]  # the mixture with the replay goes here
    args += ["--steps", "2", "--batch-size", "62", "--augment", "0", "--no-progress"]
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    assert "Starting from" in err and json.loads(out)["step"] == 2
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    assert "Resuming" in err and "Starting from" not in err


def _generative_run(glyph_cache, tmp_path):
    config = TrainConfig(arch="vae-tiny", data=str(glyph_cache), image_size=16, batch_size=62,
                         steps=1, eval_every=0)  # fmt: skip
    fit(config, tmp_path / "vae", progress=False, echo=QUIET)
    return tmp_path / "vae"


def _other_classes_run(tiny_run, tmp_path):
    """A copy of tiny_run whose meta claims another class set."""
    run = tmp_path / "digits"
    shutil.copytree(tiny_run, run)
    for meta in run.glob("*/*/meta/metadata"):
        record = json.loads(meta.read_text())
        meta.write_text(json.dumps({**record, "classes": "0123456789"}))
    return run


@pytest.mark.parametrize(
    "case, expected",
    [
        ("generative", "only classifiers can be fine-tuned"),
        ("missing", "no such run"),
        ("image size", "--image-size 32 clashes"),
        ("data size", "has 16px images but --image-size is 24"),
        ("class set", "another class set"),
    ],
)
def test_bad_sources_are_one_line_exit_2_nothing_written(
    case, expected, tiny_run, glyph_cache, tmp_path, capsys
):
    source, extra = tiny_run, []
    if case == "generative":
        source = _generative_run(glyph_cache, tmp_path)
    elif case == "missing":
        source = tmp_path / "no-such-run"
    elif case == "image size":
        extra = ["--image-size", "32"]
    elif case == "data size":  # a source trained at 24 px, data at 16
        source = tmp_path / "src24"
        shutil.copytree(tiny_run, source)
        for meta in source.glob("*/*/meta/metadata"):
            record = json.loads(meta.read_text())
            record["config"]["image_size"] = 24
            meta.write_text(json.dumps(record))
    elif case == "class set":
        source = _other_classes_run(tiny_run, tmp_path)
    workdir = tmp_path / "ft"
    code, out, err = run_cli(
        capsys, "train", "--init-from", source, "--data", glyph_cache, "--workdir", workdir,
        "--no-progress", *extra,
    )  # fmt: skip
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("charjax: error:"), err
    assert expected in lines[0], lines[0]
    assert not workdir.exists()


def test_freeze_without_init_from_is_refused():
    with pytest.raises(CharjaxError, match="needs --init-from"):
        TrainConfig(freeze="backbone")


def _sample_folder(path, counts: dict[str, int]):
    """Class folders of DejaVu renderings, `counts[char]` images of each char."""
    faces = ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf", "DejaVuSans-Bold.ttf")
    for char, n in counts.items():
        folder = path / sample_dir_name(CLASSES.index(char))
        folder.mkdir(parents=True)
        for i in range(n):
            render_char(char, faces[i % len(faces)]).save(folder / f"{i}.png")
    return path


def test_folder_holds_back_one_per_class_with_three(tmp_path):
    labels = np.array([0, 0, 0, 1, 1, 2, 5, 5, 5, 5])
    splits = hold_back_one_per_class(labels)
    assert [int(splits[labels == c].sum()) for c in (0, 1, 2, 5)] == [1, 0, 0, 1]
    folder = _sample_folder(tmp_path / "mine", {"A": 3, "b": 1, "7": 2})  # 59 classes missing
    cache = folder_cache(str(folder), 16, str(tmp_path / "cache"), progress=False)
    assert len(cache.indices("train")) == 5 and len(cache.indices("val")) == 1
    built = lambda c: (c.path / "meta.json").stat().st_mtime_ns
    again = folder_cache(str(folder), 16, str(tmp_path / "cache"), progress=False)
    assert built(again) == built(cache)  # unchanged files: not prepared again
    render_char("b").save(folder / sample_dir_name(CLASSES.index("b")) / "new.png")
    rebuilt = folder_cache(str(folder), 16, str(tmp_path / "cache"), progress=False)
    assert len(rebuilt.indices("all")) == 7


@pytest.mark.parametrize("per_class, which", [(3, "held-back images of your own"), (1, "replay")])
def test_small_folder_gets_a_replay_and_says_how_it_validates(
    per_class, which, tiny_run, glyph_cache, tmp_path, monkeypatch
):
    monkeypatch.setattr(
        finetune, "FINETUNE", dataclasses.replace(FINETUNE, replay=str(glyph_cache))
    )
    folder = _sample_folder(tmp_path / "mine", {c: per_class for c in "AbZ3"})
    said = []
    options = _options(init_from=str(tiny_run), data=f"folder:{folder}", data_dir=str(tmp_path))
    config = finetune_config(options, {"init_from", "data", "data_dir"}, said.append)
    assert config.data == f"folder:{folder}:0.5+{glyph_cache}:0.5"
    assert "replay" in said[0]
    config = dataclasses.replace(config, steps=2, batch_size=62, eval_every=0)
    summary = fit(config, tmp_path / "ft", progress=False, echo=said.append)
    assert any(which in line for line in said if line.startswith("Validating")), said
    assert summary["val"]["n"] == (4 if per_class == 3 else 31)  # glyph_cache val: 31


def test_prepared_data_validates_on_its_val_split_and_says_so(glyph_cache):
    said = []
    config = TrainConfig(data=str(glyph_cache), image_size=16, init_from="pretrained")
    val = finetune.validation_arrays(config, said.append)
    assert said == ["Validating on 31 val images of your prepared data."]
    assert len(val["label"]) == 31


def test_the_replay_keeps_a_nocase_mark(tiny_run, glyph_cache, tmp_path, monkeypatch):
    monkeypatch.setattr(
        finetune, "FINETUNE", dataclasses.replace(FINETUNE, replay=str(glyph_cache))
    )
    folder = _sample_folder(tmp_path / "mine", {c: 3 for c in "cCoO"})
    data = f"folder:{folder}:nocase"
    options = _options(init_from=str(tiny_run), data=data, data_dir=str(tmp_path))
    config = finetune_config(options, {"init_from", "data", "data_dir"}, lambda s: None)
    assert config.data == f"folder:{folder}:0.5:nocase+{glyph_cache}:0.5"


@pytest.mark.parametrize("data", ["fonts", "a+b", "folder:mine:1", "fonts:1+folder:mine:1"])
def test_a_keyword_or_a_mixture_written_out_gets_no_replay(data, tiny_run):
    said = []
    options = _options(init_from=str(tiny_run), data=data)
    assert finetune_config(options, {"init_from", "data"}, said.append).data == data
    assert not said
