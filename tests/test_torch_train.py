"""benchmarks/torch_train.py, the PyTorch twin of `charjax train` for time_to_accuracy.py:
it runs a few real steps on a tiny cache and writes eval records the watcher reads, and its
recipe (schedule, augmentation defaults and functions) is charjax's. Skipped without torch,
which only the benchmarks need (`pip install -e '.[bench]'`)."""

import json
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is a benchmarks-only dependency ([bench])")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import torch_train  # noqa: E402

from charjax import augment as charjax_augment  # noqa: E402
from charjax.config import TrainConfig  # noqa: E402
from charjax.step import ema_decay, make_schedule  # noqa: E402


def test_a_few_steps_write_eval_records(glyph_cache, tmp_path):
    workdir = tmp_path / "run"
    torch_train.main(["--arch", "resnet-small", "--data", str(glyph_cache), "--image-size",
                      "16", "--workdir", str(workdir), "--batch-size", "62", "--steps", "4",
                      "--eval-every", "2", "--log-every", "2", "--threads", "1"])  # fmt: skip
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["kind"] == "eval"]
    # Every 2 steps of 4; the end (step 4) is not evaluated twice.
    assert [r["step"] for r in evals] == [2, 4]
    for r in evals:
        assert r["n"] == 31  # the val split: one face, odd class indices
        assert 0 <= r["accuracy"] <= r["accuracy_ci"] <= 1 and r["accuracy"] <= r["top5"]
        assert r["time"] > 0 and r["epoch"] == r["step"] / 3  # 186 train images, batch 62
    info = json.loads((workdir / "config.json").read_text())
    assert info["data"]["path"] == str(glyph_cache) and info["total_steps"] == 4


def test_recipe_is_charjax_defaults():
    # The augmentation defaults, and the learning rate of every update.
    assert charjax_augment.AugmentConfig() == torch_train.AUGMENT
    config, total = TrainConfig(), 1000
    optax_lr = make_schedule(config, total)
    for step in (0, 1, 10, 49, 50, 51, 400, 999, 1000):
        assert torch_train.schedule(config, total, step) == pytest.approx(
            float(optax_lr(step)), rel=1e-5, abs=1e-9
        )


def test_the_moving_average_is_charjax_ema():
    # Params and batch-norm statistics, from the initial weights, with charjax's decay.
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    average = torch_train._Average(model, 0.9)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    for t in range(3):
        with torch.no_grad():
            for i, v in enumerate(model.state_dict().values()):
                v.add_(i + 1)  # every param and buffer moves, num_batches_tracked too
        average.update(model, t)
        d = float(ema_decay(jnp.int32(t), 0.9))
        for k, v in model.state_dict().items():
            expected[k] = d * expected[k] + (1 - d) * v if v.is_floating_point() else v.clone()
    for k, v in average.model.state_dict().items():
        torch.testing.assert_close(v, expected[k])
    assert not torch.equal(average.model[0].weight, model[0].weight)  # an average, not a copy


def test_augmentation_functions_match_charjax():
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(3, 20, 20)).astype(np.float32)
    angle = rng.uniform(-0.3, 0.3, 3)
    inverse = np.stack(
        [[[np.cos(a), np.sin(a)], [-0.1 * np.cos(a) - np.sin(a), np.cos(a)]] for a in angle]
    ).astype(np.float32) / np.float32(1.05)
    shift = rng.uniform(-1, 1, (3, 2)).astype(np.float32)
    displace = rng.normal(size=(3, 2, 20, 20)).astype(np.float32)
    sigma = np.float32([0.5, 0.8, 1.2])
    t = lambda a: torch.from_numpy(a)
    ours = torch_train.warp(t(images)[:, None], t(inverse), t(shift), t(displace))[:, 0]
    blurred = torch_train.gaussian_blur(t(images)[:, None], t(sigma))[:, 0]
    outlined = torch_train.outline(t(images)[:, None])[:, 0]
    for i in range(3):
        theirs = charjax_augment._warp(jnp.asarray(images[i]), inverse[i], shift[i], displace[i])
        np.testing.assert_allclose(ours[i].numpy(), np.asarray(theirs), atol=1e-5)
        theirs = charjax_augment._gaussian_blur(jnp.asarray(images[i]), sigma[i])
        np.testing.assert_allclose(blurred[i].numpy(), np.asarray(theirs), atol=1e-5)
        theirs = charjax_augment._outline(jnp.asarray(images[i]))
        np.testing.assert_allclose(outlined[i].numpy(), np.asarray(theirs), atol=1e-6)
    np.testing.assert_allclose(
        torch_train.smoothing(32, 3.84).numpy(), charjax_augment._smoothing(32, 3.84), atol=1e-6
    )
    # Which glyphs are thick enough to hollow: a filled square is, a 1 px frame is not.
    shapes = np.zeros((2, 20, 20), np.float32)
    shapes[0, 5:15, 5:15] = 1.0
    shapes[1, 5:15, 5:15], shapes[1, 6:14, 6:14] = 1.0, 0.0
    theirs = [bool(charjax_augment._has_inside(jnp.asarray(s))) for s in shapes]
    assert torch_train.has_inside(t(shapes)[:, None]).tolist() == theirs == [True, False]
    out = torch_train.augment(t(images)[:, None], torch.Generator().manual_seed(0))
    assert out.shape == (3, 1, 20, 20) and out.min() >= 0 and out.max() <= 1
