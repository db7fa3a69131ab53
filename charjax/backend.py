"""Per-backend defaults: XLA flags for the CPU, set by `import charjax` unless the user chose
their own, and the compute dtype a model uses on each platform (`compute_dtype`).

XLA reads the XLA_FLAGS environment variable once, when JAX creates its first backend (the
first `jax.devices()` call or computation), not at `import jax`. So `charjax/__init__.py`
imports this module first, before anything that could touch a device, and `configure()`
appends charjax's CPU defaults to XLA_FLAGS there. They take effect whenever `import charjax`
comes before the process's first JAX computation (the CLI, the GUI and scripts that import
charjax at the top); if JAX had already started, they are left out and `applied()` says so.

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

try:  # private, but the only way to know whether JAX has started; guarded in case it moves
    from jax._src.xla_bridge import backends_are_initialized
except ImportError:  # pragma: no cover
    backends_are_initialized = lambda: False

# flag -> value. Keep each with its reason and measurement.
CPU_FLAGS: dict[str, str] = {
    # jax 0.10's XLA:CPU hands dots, convolutions, reductions and elementwise ops to YNNPACK
    # fusions by default. YNNPACK's reductions and elementwise fusions stop XLA from fusing
    # the producers into them (cnn-small materialises every shifted tap of its convs), and
    # its convs were no faster than XLA's own here: off, cnn-small trains 1.2-1.7x faster
    # and resnet-small the same or faster.
    "--xla_cpu_experimental_ynn_fusion_type": "",
}

_state = {"applied": False}


def configure(environ=None) -> bool:
    """Appends charjax's CPU flags to XLA_FLAGS (those the user has not set). Idempotent.

    Returns True when the flags are in place for the backend JAX will create.
    """
    environ = os.environ if environ is None else environ
    if environ.get("CHARJAX_XLA_DEFAULTS", "1") == "0":
        return False
    if backends_are_initialized():
        return _state["applied"]
    flags = environ.get("XLA_FLAGS", "").split()
    given = {f.split("=", 1)[0] for f in flags}
    extra = [f"{name}={value}" for name, value in CPU_FLAGS.items() if name not in given]
    if extra:
        environ["XLA_FLAGS"] = " ".join(flags + extra)
    _state["applied"] = True
    return True


def applied() -> bool:
    """Whether charjax's CPU flags were set before JAX started its backend."""
    return _state["applied"]


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
