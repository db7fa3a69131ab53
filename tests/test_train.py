"""The train step, data parallelism, checkpoints, exact resume and the NaN guard."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from charjax import parallel
from charjax.checkpoint import RunCheckpoints, load_for_inference
from charjax.config import TrainConfig
from charjax.data.cache import load_cache
from charjax.errors import CharjaxError
from charjax.fit import fit
from charjax.models import get_model
from charjax.step import create_train_state, jit_train_step, make_optimizer, make_schedule

REPO = Path(__file__).resolve().parents[1]


def _state_and_step(config: TrainConfig, mesh, total_steps=100):
    schedule = make_schedule(config, total_steps)
    model = get_model(config.arch)
    state = create_train_state(model, config, make_optimizer(config, schedule), mesh)
    return state, jit_train_step(config, schedule, mesh)


def _batch(cache_path, n=32):
    cache = load_cache(cache_path)
    idx = np.arange(n)
    return {
        "image": np.asarray(cache.images[idx]),
        "label": np.asarray(cache.labels[idx]),
        "mask": np.ones(n, bool),
    }


def test_train_step_overfits_a_tiny_batch(glyph_cache):
    config = TrainConfig(
        arch="tiny",
        image_size=16,
        lr=1e-2,
        augment=0.0,
        label_smoothing=0.0,
        weight_decay=0.0,
        schedule="constant",
    )
    mesh = parallel.make_mesh()
    state, step = _state_and_step(config, mesh)
    batch = parallel.put_batch(_batch(glyph_cache), mesh)
    first = None
    for _ in range(150):
        state, metrics = step(state, batch)
        first = first if first is not None else float(metrics["loss"])
    assert first > 3.5  # ~ln(62) at init
    assert float(metrics["loss"]) < 0.1
    assert float(metrics["accuracy"]) == 1.0
    assert int(state.step) == 150
    assert {"loss", "accuracy", "lr", "grad_norm", "param_norm"} <= set(metrics)


def test_two_devices_give_the_same_step_as_one(glyph_cache):
    # Device count is fixed when jax starts, so the comparison runs in a fresh interpreter.
    script = textwrap.dedent(f"""
        import jax, numpy as np, optax
        from charjax import parallel
        from charjax.config import TrainConfig
        from charjax.data.cache import load_cache
        from charjax.models import get_model
        from charjax.step import create_train_state, jit_train_step, make_optimizer, make_schedule
        assert jax.device_count() == 2
        cache = load_cache({str(glyph_cache)!r})
        batch = {{"image": np.asarray(cache.images[:32]), "label": np.asarray(cache.labels[:32]),
                  "mask": np.ones(32, bool)}}
        config = TrainConfig(arch="resnet-small", image_size=16, batch_size=32)
        results = []
        for devices in (jax.devices()[:1], jax.devices()):
            mesh = parallel.make_mesh(devices)
            schedule = make_schedule(config, 10)
            state = create_train_state(get_model(config.arch), config,
                                       make_optimizer(config, schedule), mesh)
            step = jit_train_step(config, schedule, mesh)
            for _ in range(3):
                state, metrics = step(state, parallel.put_batch(batch, mesh))
            results.append((float(metrics["loss"]), float(metrics["grad_norm"]),
                            jax.device_get(optax.tree_utils.tree_get(state.opt_state, "mu")),
                            jax.device_get(state.params)))
        (loss1, g1, mu1, p1), (loss2, g2, mu2, p2) = results
        np.testing.assert_allclose(loss1, loss2, rtol=1e-5)
        np.testing.assert_allclose(g1, g2, rtol=1e-4)
        # Gradients (Adam's first moments) agree to float tolerance: the all-reduce only sums
        # in another order.
        close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-6)
        jax.tree.map(close, mu1, mu2)
        # Params get a looser bound: Adam divides by sqrt(v), so a gradient that is ~0 in one
        # run and ~1e-9 in the other can move its weight by up to a full step (lr 3e-3).
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=3 * 3e-3), p1, p2)
        print("OK", loss1, loss2)
    """)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("OK")


def test_checkpoint_round_trip(tmp_path):
    config = TrainConfig(arch="tiny", image_size=16)
    mesh = parallel.make_mesh()
    state, _ = _state_and_step(config, mesh)
    state = state.replace(step=state.step + 7)
    ckpts = RunCheckpoints(tmp_path)
    meta = {"config": config.to_dict(), "preprocess": {"size": 16}, "iterator": {"epoch": 3}}
    ckpts.save(7, state.checkpoint_items(), meta, best=True)
    ckpts.wait()
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
        state.checkpoint_items(),
    )
    items, meta_back = ckpts.restore_latest(abstract)
    ckpts.close()
    assert meta_back["iterator"] == {"epoch": 3}
    restored = state.with_checkpoint_items(items)
    same = jax.tree.map(
        lambda a, b: bool(jnp.array_equal(a, b)),
        state.checkpoint_items(),
        restored.checkpoint_items(),
    )
    assert all(jax.tree.leaves(same))
    model_vars, _ = load_for_inference(tmp_path)  # the best/ copy, read for inference
    np.testing.assert_array_equal(
        jax.tree.leaves(model_vars["params"])[0], jax.tree.leaves(state.params)[0]
    )


def _cli(*args, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "charjax.cli.main", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def _latest_params(workdir: Path):
    variables, meta = load_for_inference(workdir / "checkpoints")
    return variables["params"], meta["step"]


@pytest.mark.slow
def test_resume_after_sigkill_is_bitwise_exact(glyph_cache, tmp_path):
    args = [
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
        "600",
        "--checkpoint-every",
        "50",
        "--eval-every",
        "0",
        "--no-progress",
    ]
    straight = _cli(*args, "--workdir", str(tmp_path / "straight"))

    interrupted = tmp_path / "interrupted"
    proc = _cli(*args, "--workdir", str(interrupted))
    deadline = time.time() + 240
    while not (interrupted / "checkpoints" / "50" / "commit_success.txt").exists():
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = max(
        int(p.name) for p in (interrupted / "checkpoints").iterdir() if p.name.isdigit()
    )
    assert killed_at < 600, "the run finished before it was killed; the test proved nothing"

    resumed = _cli(*args, "--workdir", str(interrupted))
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert f"from step {killed_at}" in err or "Resuming" in err
    assert straight.wait(timeout=300) == 0, straight.stderr.read()

    p_straight, s1 = _latest_params(tmp_path / "straight")
    p_resumed, s2 = _latest_params(interrupted)
    assert s1 == s2 == 600
    jax.tree.map(np.testing.assert_array_equal, p_straight, p_resumed)


def test_resume_with_other_options_is_refused(glyph_cache, tmp_path):
    config = TrainConfig(
        arch="tiny", data=str(glyph_cache), image_size=16, batch_size=32, steps=2, eval_every=0
    )
    fit(config, tmp_path, progress=False, echo=lambda s: None)
    changed = TrainConfig(**{**config.to_dict(), "lr": 0.1, "batch_size": 16})
    with pytest.raises(CharjaxError, match=r"lr: 0.003 -> 0.1.*batch_size|batch_size.*lr"):
        fit(changed, tmp_path, progress=False, echo=lambda s: None)
    # Bookkeeping options may change on resume.
    fit(
        TrainConfig(**{**config.to_dict(), "log_every": 1}),
        tmp_path,
        progress=False,
        echo=lambda s: None,
    )


def test_nan_stops_training_and_names_the_step(glyph_cache, tmp_path, monkeypatch):
    import charjax.fit as fit_module

    real = fit_module.jit_train_step

    def poisoned(config, schedule, mesh):
        step = real(config, schedule, mesh)

        def wrapped(state, batch):
            state, metrics = step(state, batch)
            loss = jnp.where(state.step == 3, jnp.nan, metrics["loss"])
            return state, {**metrics, "loss": loss}

        return wrapped

    monkeypatch.setattr(fit_module, "jit_train_step", poisoned)
    config = TrainConfig(
        arch="tiny",
        data=str(glyph_cache),
        image_size=16,
        batch_size=32,
        steps=10,
        eval_every=0,
        checkpoint_every=0,
    )
    with pytest.raises(CharjaxError, match="diverged at step 3: loss is nan"):
        fit(config, tmp_path, progress=False, echo=lambda s: None)
    assert not (tmp_path / "checkpoints" / "10").exists()


def test_fit_writes_metrics_and_best_checkpoint(glyph_cache, tmp_path):
    config = TrainConfig(
        arch="tiny",
        data=str(glyph_cache),
        image_size=16,
        batch_size=32,
        steps=12,
        eval_every=6,
        log_every=4,
    )
    summary = fit(config, tmp_path, progress=False, echo=lambda s: None)
    assert summary["step"] == 12
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval"]
    assert [r["step"] for r in train] == [4, 8, 12]
    assert [r["step"] for r in evals] == [6, 12]
    assert all(
        {"loss", "accuracy", "lr", "images_per_sec", "data_wait", "time"} <= set(r) for r in train
    )
    assert (tmp_path / "best").is_dir() and (tmp_path / "config.json").is_file()
