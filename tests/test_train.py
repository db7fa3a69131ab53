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
import orbax.checkpoint as ocp
import pytest
from conftest import OPT_LEVEL, run_cli

from charjax import parallel
from charjax.checkpoint import RunCheckpoints, load_for_inference
from charjax.config import TrainConfig
from charjax.data.cache import load_cache
from charjax.errors import CharjaxError
from charjax.fit import fit
from charjax.models import get_model
from charjax.preprocess import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE, PreprocessSpec
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


def test_the_train_step_lets_nocase_images_be_either_case(glyph_cache, tmp_path):
    config = TrainConfig(arch="tiny", image_size=16, augment=0.0, label_smoothing=0.0)
    mesh = parallel.make_mesh()
    losses = {}
    for flag in (False, True):
        state, step = _state_and_step(config, mesh)  # the same init both times
        batch = _batch(glyph_cache, 62) | {"nocase": np.full(62, flag)}
        losses[flag] = float(step(state, parallel.put_batch(batch, mesh))[1]["loss"])
    # 14 of the 62 glyphs are same-shape letters: their loss drops by about log 2 / 62 each.
    assert 0.5 * 14 * np.log(2) / 62 < losses[False] - losses[True] < 1.5 * 14 * np.log(2) / 62
    # And a whole run on a `:nocase` part trains and evaluates.
    config = TrainConfig(arch="tiny", data=f"{glyph_cache}:nocase", data_dir=str(tmp_path),
                         image_size=16, batch_size=32, steps=2, eval_every=2)  # fmt: skip
    assert fit(config, tmp_path / "run", progress=False, echo=lambda s: None)["step"] == 2


@pytest.fixture(scope="module")
def device_comparisons(glyph_cache) -> dict[bool, str]:
    """Runs 3 steps of resnet-small on 1 CPU device, then on 2 with the right gradient and on
    2 with a wrong one, and compares each 2-device run with the 1-device run. Returns the
    script's line per `wrong_gradient`: "OK ..." when they agree within the bounds,
    "DIFFER ..." when not. Both tests share one interpreter and one 1-device run.

    The wrong run's second gradient is scaled by 1.01, a stand-in for a data-parallel bug (a
    shard counted wrong) that the bounds must catch.
    """
    # Device count is fixed when jax starts, so the comparison runs in a fresh interpreter.
    script = textwrap.dedent(f"""
        import jax, jax.numpy as jnp, numpy as np, optax
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
        flat = lambda tree: np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])

        def mesh_and_step(devices):
            mesh = parallel.make_mesh(devices)
            return mesh, jit_train_step(config, schedule, mesh)

        def run(mesh, step, wrong=False):
            # The gradient first passes a scale held in the optimizer state (1.0: exact), so
            # the wrong run differs only in that number, and both 2-device runs share one
            # compiled step. Adam undoes a constant scale, so only one step's is changed.
            tx = optax.chain(optax.inject_hyperparams(optax.scale)(step_size=1.0),
                             make_optimizer(config, schedule))
            state = create_train_state(get_model(config.arch), config, tx, mesh)
            for n in range(3):
                if wrong:
                    size = jnp.float32(1.01 if n == 1 else 1.0)
                    state = state.replace(
                        opt_state=optax.tree_utils.tree_set(state.opt_state, step_size=size))
                state, metrics = step(state, parallel.put_batch(batch, mesh))
            mu = optax.tree_utils.tree_get(state.opt_state, "mu")
            return (float(metrics["loss"]), float(metrics["grad_norm"]),
                    flat(jax.device_get(mu)), flat(jax.device_get(state.params)))

        schedule = make_schedule(config, 10)
        (loss1, g1, mu1, p1) = run(*mesh_and_step(jax.devices()[:1]))
        mesh2, step2 = mesh_and_step(jax.devices())
        for wrong in (False, True):
            (loss2, g2, mu2, p2) = run(mesh2, step2, wrong=wrong)
            # The all-reduce only sums in another order, so the runs agree to float rounding. Not
            # every weight does: Adam divides by sqrt(v), so a gradient that is ~0 in one run and
            # ~1e-9 in the other (a bias before batch norm) can move its weight by a full step (lr
            # 3e-3). So the tight bound is on the mean |difference| of the params: measured
            # 7e-9..1.4e-7 for the right step, 4e-6..9e-6 with the wrong gradient.
            errors = {{
                "loss": abs(loss1 / loss2 - 1),
                "grad_norm": abs(g1 / g2 - 1),
                "mu": np.abs(mu1 - mu2).mean() / np.abs(mu1).mean(),
                "params_mean": np.abs(p1 - p2).mean(),
                "params_max": np.abs(p1 - p2).max(),
            }}
            bounds = {{"loss": 1e-5, "grad_norm": 1e-4, "mu": 1e-3, "params_mean": 1e-6,
                       "params_max": 3 * 3e-3}}
            over = [k for k in bounds if not errors[k] < bounds[k]]
            errors = {{k: float(v) for k, v in errors.items()}}
            print(wrong, "DIFFER" if over else "OK", over, errors)
    """)
    # Two CPU devices on any machine (a GPU machine would otherwise give its one GPU).
    flags = f"--xla_force_host_platform_device_count=2 {OPT_LEVEL}"
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [line.split(" ", 1) for line in out.stdout.splitlines()]
    found = {first: rest for first, *rest in lines if first in ("False", "True")}
    return {False: "".join(found["False"]), True: "".join(found["True"])}


def test_two_devices_give_the_same_step_as_one(device_comparisons):
    out = device_comparisons[False]
    assert out.startswith("OK"), out


@pytest.mark.slow
def test_a_wrong_gradient_on_two_devices_fails_the_comparison(device_comparisons):
    out = device_comparisons[True]
    over = out.split("{")[0]  # "DIFFER [names of the bounds it broke] {errors}"
    assert out.startswith("DIFFER") and "params_mean" in over, out


def test_config_round_trips_and_refuses_fields_it_does_not_know():
    config = TrainConfig(arch="tiny", steps=7, latent_dim=None)
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(CharjaxError, match=r"unknown training config fields \['optimizer'\]"):
        TrainConfig.from_dict({**config.to_dict(), "optimizer": "lion"})


def test_image_size_limits_are_the_same_for_data_and_training():
    for size in (MIN_IMAGE_SIZE, MAX_IMAGE_SIZE):
        assert TrainConfig(image_size=size).image_size == PreprocessSpec(size=size).size
    for size in (MIN_IMAGE_SIZE - 1, MAX_IMAGE_SIZE + 1):
        with pytest.raises(CharjaxError, match="image size must be"):
            TrainConfig(image_size=size)
        with pytest.raises(CharjaxError, match="image size must be"):
            PreprocessSpec(size=size)


def test_the_moving_average_follows_the_weights_by_its_decay(glyph_cache):
    config = TrainConfig(arch="tiny", image_size=16, augment=0.0, lr=1e-2, ema=0.9)
    mesh = parallel.make_mesh()
    state, step = _state_and_step(config, mesh)
    batch = parallel.put_batch(_batch(glyph_cache), mesh)
    host = lambda tree: jax.tree.map(np.asarray, jax.device_get(tree))
    average = host(state.live())  # it starts at the initial weights
    for t in range(3):
        state, _ = step(state, batch)
        d = min(0.9, (1 + t) / (10 + t))  # the warm-up: 0.1, 0.18, 0.25
        average = jax.tree.map(lambda e, v, d=d: d * e + (1 - d) * v, average, host(state.live()))
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    jax.tree.map(close, average, host(state.ema))
    moved = jax.tree.map(lambda a, b: bool(np.any(a != b)), host(state.ema), host(state.live()))
    assert any(jax.tree.leaves(moved["params"]))  # the average is not the live weights
    assert state.model_variables()["params"] is state.ema["params"]


def test_a_run_with_ema_saves_and_evaluates_the_average(glyph_cache, tmp_path, capsys):
    config = TrainConfig(arch="tiny", data=str(glyph_cache), image_size=16, batch_size=62,
                         steps=6, lr=1e-2, augment=0.0, eval_every=3, ema=0.9)  # fmt: skip
    summary = fit(config, tmp_path / "run", progress=False, echo=lambda s: None)
    step_dir = tmp_path / "run" / "checkpoints" / "6"
    with ocp.StandardCheckpointer() as checkpointer:
        train = checkpointer.restore((step_dir / "train").absolute())
    model, _ = load_for_inference(step_dir)
    live, average = train["live"]["params"], model["params"]
    assert jax.tree.structure(live) == jax.tree.structure(average)
    assert any(jax.tree.leaves(jax.tree.map(lambda a, b: bool(np.any(a != b)), live, average)))
    assert summary["params_digest"] == parallel.replica_digest(live)  # the summary's: live
    code, out, _ = run_cli(capsys, "eval", "--checkpoint", step_dir, "--data", glyph_cache)
    assert code == 0 and "(step 6, the weights' moving average, --ema 0.9)" in out


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--ema", -0.1, "ema decay must be in [0, 1) (0: none), got -0.1"),
        ("--ema", 1.0, "ema decay must be in [0, 1) (0: none), got 1.0"),
        ("--outline", 1.5, "outline is a probability in [0, 1], got 1.5"),
    ],
)
def test_an_option_out_of_range_is_refused_in_one_line(option, value, message, tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", option, value, "--workdir", tmp_path / "run")
    assert code == 2 and "Traceback" not in err and message in err
    assert not (tmp_path / "run").exists()


def test_outline_reaches_the_steps_augmentation(glyph_cache):
    # The same state, batch and key; only the share of hollowed images differs.
    mesh = parallel.make_mesh()
    batch = parallel.put_batch(_batch(glyph_cache), mesh)
    losses = []
    for outline in (0.0, 1.0):
        config = TrainConfig(arch="tiny", image_size=16, outline=outline)
        state, step = _state_and_step(config, mesh)
        losses.append(float(step(state, batch)[1]["loss"]))
    assert losses[0] != losses[1]


@pytest.mark.parametrize("ema", [0.0, 0.99])
def test_checkpoint_round_trip(tmp_path, ema):
    config = TrainConfig(arch="tiny", image_size=16, ema=ema)
    mesh = parallel.make_mesh()
    state, _ = _state_and_step(config, mesh)
    state = state.replace(step=state.step + 7)
    if ema:  # an average that differs from the live weights, to tell them apart below
        state = state.replace(ema=jax.tree.map(lambda x: x + 1.0, state.ema))
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
        (state.live(), state.ema, state.opt_state, state.step, state.rng),
        (restored.live(), restored.ema, restored.opt_state, restored.step, restored.rng),
    )
    assert all(jax.tree.leaves(same))
    model_vars, _ = load_for_inference(tmp_path)  # the best/ copy, read for inference
    np.testing.assert_array_equal(  # the model a predictor gets: the average, if kept
        jax.tree.leaves(model_vars["params"])[0],
        jax.tree.leaves(state.model_variables()["params"])[0],
    )


def test_a_damaged_checkpoint_is_a_user_error_and_a_bug_is_not(tmp_path, monkeypatch):
    config = TrainConfig(arch="tiny", image_size=16)
    state, _ = _state_and_step(config, parallel.make_mesh())
    ckpts = RunCheckpoints(tmp_path)
    ckpts.save(1, state.checkpoint_items(), {"config": config.to_dict(), "preprocess": {}})
    ckpts.wait()
    ckpts.close()
    data_files = [f for f in (tmp_path / "checkpoints" / "1" / "model").rglob("d/*")]
    assert data_files
    for f in data_files:
        f.write_bytes(f.read_bytes()[:10])
    with pytest.raises(CharjaxError, match="cannot read the checkpoint"):
        load_for_inference(tmp_path)

    def bug(*args, **kwargs):
        raise TypeError("a bug in charjax, not a damaged file")

    monkeypatch.setattr(ocp.StandardCheckpointHandler, "metadata", bug)
    with pytest.raises(TypeError, match="a bug in charjax"):
        load_for_inference(tmp_path)


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
