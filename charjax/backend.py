"""Per-backend defaults: XLA flags for the CPU, set by `import charjax` unless the user chose
their own (`configure`), and the compute dtype a model uses on each platform (`compute_dtype`).

XLA reads the XLA_FLAGS environment variable once, when JAX creates its first backend (the
first `jax.devices()` call or computation), not at `import jax`. So `charjax/__init__.py`
calls `configure()` first, before anything that could touch a device; it appends charjax's
CPU defaults to XLA_FLAGS. They take effect whenever `import charjax` comes before the
process's first JAX computation (the CLI, the GUI and scripts that import charjax at the top).
JAX has no public way to ask whether its backend has started, so `configure` does not guess:
called later, it still sets the variable (for child processes), and this process keeps the
flags it started with. Nothing here imports JAX at module level, so `import charjax` stays
light for the data workers it spawns.

The rules:
- a flag the user already put in XLA_FLAGS is never overridden;
- CHARJAX_XLA_DEFAULTS=0 in the environment turns all of this off (benchmarks use it to
  measure the plain configuration);
- only XLA:CPU flags are set. On a GPU/TPU machine they change nothing the accelerator runs,
  which is why they can be set before knowing which backend JAX will pick.

Every default below was measured with benchmarks/train_step.py (interleaved A/B, see
README "Performance"); each says why it is here.
"""

import os

# flag -> value. Keep each with its reason and measurement.
CPU_FLAGS: dict[str, str] = {
    # jax 0.10's XLA:CPU hands dots, convolutions, reductions and elementwise ops to YNNPACK
    # fusions by default. YNNPACK's reductions and elementwise fusions stop XLA from fusing
    # the producers into them (cnn-small materialises every shifted tap of its convs), and
    # its convs were no faster than XLA's own here: off, cnn-small trains 1.2-1.7x faster
    # and resnet-small the same or faster.
    "--xla_cpu_experimental_ynn_fusion_type": "",
}


def configure(environ=None) -> bool:
    """Appends charjax's CPU flags to XLA_FLAGS (those the user has not set). Idempotent.

    `import charjax` calls it; call it yourself only with your own `environ` (a child
    process's environment). It must run before JAX's first computation to affect this process.

    Args:
      environ: the environment to edit; None means `os.environ`.

    Returns:
      False when CHARJAX_XLA_DEFAULTS=0 turned the defaults off, else True.
    """
    environ = os.environ if environ is None else environ
    if environ.get("CHARJAX_XLA_DEFAULTS", "1") == "0":
        return False
    flags = environ.get("XLA_FLAGS", "").split()
    given = {f.split("=", 1)[0] for f in flags}
    extra = [f"{name}={value}" for name, value in CPU_FLAGS.items() if name not in given]
    if extra:
        environ["XLA_FLAGS"] = " ".join(flags + extra)
    return True


# The compute dtype by platform, for `--dtype auto`. Params, optimizer state, batch-norm
# statistics and logits stay float32 whatever this is (the models cast at their edges).
# GPU/TPU: bfloat16 matmuls and convs run at 2x+ the float32 rate with float32 accumulation
# and halve activation memory. CPU: float32, because XLA:CPU computes convolutions in float32
# anyway and the casts cost time (measured here: bfloat16 cnn-small 0.41x, resnet-small 1.02x).
AUTO_DTYPES = {"cpu": "float32", "gpu": "bfloat16", "cuda": "bfloat16", "rocm": "bfloat16",
               "tpu": "bfloat16"}  # fmt: skip
DTYPES = ("auto", "float32", "bfloat16")


def compute_dtype(name: str = "auto", platform: str | None = None):
    """The jnp dtype a model computes in: `name`, or for "auto" the platform's (see above).

    Args:
      name: "auto", "float32" or "bfloat16" (a TrainConfig's `dtype`).
      platform: "cpu", "gpu", "tpu"...; None means `jax.default_backend()`.
    """
    import jax  # not at import time: configure() must run before anything touches JAX
    import jax.numpy as jnp

    if name == "auto":
        name = AUTO_DTYPES.get(platform or jax.default_backend(), "float32")
    if name not in DTYPES:
        from charjax.errors import CharjaxError

        raise CharjaxError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPES)}")
    return jnp.dtype(name)
