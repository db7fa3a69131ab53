"""Training curves (`charjax plot`) and TensorBoard event files (`charjax train --tensorboard`)."""

import json
import struct
import sys

import pytest
from conftest import run_cli
from PIL import Image

from charjax.config import TrainConfig
from charjax.errors import CharjaxError
from charjax.fit import fit
from charjax.tensorboard import TensorBoardWriter
from charjax.viz.curves import DPI, FIGSIZE, read_metrics


@pytest.fixture(scope="module")
def tb_run(glyph_cache, tmp_path_factory):
    """40 steps of `tiny` logging every 5, evaluating and writing histograms every 20."""
    pytest.importorskip("tensorboardX", reason="charjax[tensorboard] is not installed")
    workdir = tmp_path_factory.mktemp("runs") / "tiny"
    config = TrainConfig(arch="tiny", data=str(glyph_cache), image_size=16, batch_size=62,
                         steps=40, lr=1e-2, augment=0.0, log_every=5, eval_every=20,
                         checkpoint_every=0, tensorboard=True, histogram_every=20)  # fmt: skip
    fit(config, workdir, progress=False, echo=lambda s: None)
    return workdir


def test_plot_reads_train_and_eval_lines_and_writes_a_png(tb_run, tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="charjax[plot] is not installed")
    history = read_metrics(tb_run)
    assert [r["step"] for r in history["train"]] == [5, 10, 15, 20, 25, 30, 35, 40]
    assert [r["step"] for r in history["eval"]] == [20, 40]
    assert {"loss", "accuracy", "lr"} <= set(history["train"][0])
    out = tmp_path / "curves.png"
    other = tmp_path / "other"  # a second run, to overlay: the same curves shifted
    other.mkdir()
    lines = (tb_run / "metrics.jsonl").read_text().splitlines()
    shifted = [
        json.dumps({**json.loads(line), "loss": 2 * json.loads(line)["loss"]}) for line in lines
    ]
    (other / "metrics.jsonl").write_text("\n".join(shifted) + "\n")
    code, stdout, err = run_cli(capsys, "plot", str(tb_run), str(other), "--out", str(out))
    assert code == 0, err
    assert stdout.strip() == str(out)
    assert Image.open(out).size == (round(FIGSIZE[0] * DPI), round(FIGSIZE[1] * DPI))


def test_read_metrics_keeps_the_resumed_history(tmp_path):
    rows = [("train", 10, 3.0), ("train", 20, 2.0), ("eval", 20, 2.5), ("train", 30, 1.5),
            # crashed after step 30; resumed from the checkpoint at step 20:
            ("train", 30, 1.4), ("eval", 40, 1.9), ("train", 40, 1.2)]  # fmt: skip
    text = "".join(json.dumps({"kind": k, "step": s, "epoch": s / 10, "loss": v}) + "\n"
                   for k, s, v in rows)  # fmt: skip
    (tmp_path / "metrics.jsonl").write_text(text + '{"kind": "train", "st')  # cut off mid-line
    history = read_metrics(tmp_path)
    assert [(r["step"], r["loss"]) for r in history["train"]] == [(10, 3.0), (20, 2.0), (30, 1.4),
                                                                  (40, 1.2)]  # fmt: skip
    assert [r["step"] for r in history["eval"]] == [20, 40]


def test_plot_errors_are_one_line(tmp_path, capsys, monkeypatch):
    code, _, err = run_cli(capsys, "plot", str(tmp_path / "nothing"))
    assert code == 2 and err.count("\n") == 1 and "no metrics at" in err
    (tmp_path / "metrics.jsonl").write_text('{"kind": "train", "step": 1, "loss": 1.0}\n')
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    code, _, err = run_cli(capsys, "plot", str(tmp_path), "--out", str(tmp_path / "c.png"))
    assert code == 2 and err.count("\n") == 1, err
    assert "needs matplotlib: pip install 'charjax[plot]'" in err


def test_tensorboard_needs_tensorboardx_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    with pytest.raises(CharjaxError, match=r"pip install 'charjax\[tensorboard\]'"):
        TensorBoardWriter(tmp_path)


def _events(logdir):
    """Every Event proto in a directory's event files, read with tensorboardX's own protos."""
    from tensorboardX.proto.event_pb2 import Event

    events = []
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        pos = 0
        while pos < len(data):  # TFRecord: u64 length, u32 crc, payload, u32 crc
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            events.append(Event.FromString(data[pos + 12 : pos + 12 + length]))
            pos += 12 + length + 4
    return events


def test_tensorboard_event_files_hold_scalars_and_histograms(tb_run):
    events = _events(tb_run / "tensorboard")
    scalars = {
        (v.tag, e.step) for e in events for v in e.summary.value if v.HasField("simple_value")
    }
    histograms = {(v.tag, e.step) for e in events for v in e.summary.value if v.HasField("histo")}
    assert {("train/loss", 5), ("train/accuracy", 40), ("train/lr", 20)} <= scalars
    assert {("val/loss", 20), ("val/accuracy", 40), ("val/accuracy_ci", 40)} <= scalars
    assert {("params/Conv_0/kernel", 20), ("params/Dense_0/bias", 40)} <= histograms


def test_tensorboard_reads_the_event_files(tb_run):
    accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator",
        reason="the tensorboard package is not installed (pip install tensorboard)",
    )
    acc = accumulator.EventAccumulator(str(tb_run / "tensorboard"), size_guidance={"histograms": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"train/loss", "train/lr", "val/accuracy"} <= set(tags["scalars"])
    assert [e.step for e in acc.Scalars("train/loss")] == [5, 10, 15, 20, 25, 30, 35, 40]
    assert [e.step for e in acc.Scalars("val/accuracy")] == [20, 40]
    assert "params/Conv_1/kernel" in tags["histograms"]
    histogram = acc.Histograms("params/Conv_1/kernel")
    assert [h.step for h in histogram] == [20, 40]
    assert histogram[0].histogram_value.num == 3 * 3 * 8 * 16  # every weight of the kernel
