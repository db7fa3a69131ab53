"""The training state and the pure, jitted steps.

`train_step(state, batch) -> (state, metrics)` is a pure function: augmentation, forward pass,
loss and the optax update all happen inside one jitted, data-parallel XLA program with the old
state donated. Randomness comes from the state's rng folded with the step, so a resumed run
draws exactly the same augmentations and dropout masks as an uninterrupted one. The loss is
the objective of the model's kind (`charjax.losses`): cross-entropy for classifiers,
reconstruction + beta * KL for the autoencoders.

With `TrainConfig.ema`, the state also keeps an exponential moving average of the params and
batch statistics. The average is the run's model: it is what evaluation measures and what
checkpoints give to `predict`, `eval` and fine-tuning; the live weights are training state.
"""

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax.sharding import Mesh

from charjax import parallel
from charjax.augment import AugmentConfig, augment_batch
from charjax.config import TrainConfig
from charjax.errors import CharjaxError
from charjax.labels import NUM_CLASSES
from charjax.losses import Objective, objective_for
from charjax.preprocess import model_input


class TrainState(struct.PyTreeNode):
    """Everything that changes during training. `apply_fn` and `tx` are static."""

    step: jax.Array  # int32 []
    params: Any
    batch_stats: Any  # {} for models without batch norm
    opt_state: Any
    rng: jax.Array  # uint32 [2], a raw PRNG key (checkpoints as a plain array)
    apply_fn: Callable = struct.field(pytree_node=False)
    tx: optax.GradientTransformation = struct.field(pytree_node=False)
    # {"params", "batch_stats"}: their moving average (--ema); {} when the run keeps none.
    ema: Any = struct.field(default_factory=dict)

    def live(self) -> dict[str, Any]:
        return {"params": self.params, "batch_stats": self.batch_stats}

    def model_variables(self) -> dict[str, Any]:
        """The variables the run is evaluated with and saves as its model: the moving
        average's when it keeps one, else the live ones."""
        v = self.ema or self.live()
        return dict(v) if v["batch_stats"] else {"params": v["params"]}

    def checkpoint_items(self) -> dict[str, Any]:
        """The state split the way checkpoints store it (see charjax.checkpoint): "model" is
        what a predictor reads; with a moving average the live weights go with "train"."""
        train = {"step": self.step, "opt_state": self.opt_state, "rng": self.rng}
        if not self.ema:
            return {"model": self.live(), "train": train}
        return {"model": self.ema, "train": {**train, "live": self.live()}}

    def with_checkpoint_items(self, items: dict[str, Any]) -> "TrainState":
        train = items["train"]
        live = train["live"] if self.ema else items["model"]
        return self.replace(
            params=live["params"],
            batch_stats=live["batch_stats"],
            ema=items["model"] if self.ema else {},
            step=train["step"],
            opt_state=train["opt_state"],
            rng=train["rng"],
        )


def ema_decay(step: jax.Array, decay: float) -> jax.Array:
    """The moving average's decay at `step`: `decay`, but at most (1 + step) / (10 + step), so
    early on the average forgets the initial weights quickly instead of being held back by
    them for ~1 / (1 - decay) steps (the warm-up of TensorFlow's ExponentialMovingAverage)."""
    return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def make_schedule(config: TrainConfig, total_steps: int) -> optax.Schedule:
    if config.schedule == "constant":
        return optax.constant_schedule(config.lr)
    warmup = int(config.warmup * total_steps)
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=config.lr,
        warmup_steps=warmup,
        decay_steps=max(total_steps, warmup + 1),
        end_value=config.lr * 0.01,
    )


def head_labels(params) -> dict:
    """ "train" for the params of the output layer (a dense kernel with NUM_CLASSES outputs and
    its bias), "frozen" for every other param."""
    head = [
        name
        for name, p in params.items()
        if isinstance(p, dict)
        and getattr(p.get("kernel"), "ndim", 0) == 2
        and p["kernel"].shape[-1] == NUM_CLASSES
    ]
    if len(head) != 1:
        raise CharjaxError("--freeze backbone: cannot tell this model's output layer apart")
    return {
        name: jax.tree.map(lambda _, n=name: "train" if n == head[0] else "frozen", p)
        for name, p in params.items()
    }


def freeze_transform(config: TrainConfig, tx: optax.GradientTransformation):
    """`tx` for the trainable params and no update at all for the frozen ones."""
    if config.freeze == "none":
        return tx
    return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, head_labels)


def make_optimizer(config: TrainConfig, schedule: optax.Schedule) -> optax.GradientTransformation:
    # Decay only kernels (ndim > 1): decaying biases and norm scales just fights the norm layers.
    decay_mask = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)
    tx = optax.adamw(schedule, weight_decay=config.weight_decay, mask=decay_mask)
    return freeze_transform(config, tx)  # --freeze backbone: only the output layer moves


def create_train_state(
    model: nn.Module, config: TrainConfig, tx: optax.GradientTransformation, mesh: Mesh
) -> TrainState:
    """Initialises params, batch stats and optimizer state, replicated over the mesh."""
    rng = jax.random.PRNGKey(config.seed)
    init_rng, state_rng = jax.random.split(rng)

    @functools.partial(jax.jit, out_shardings=parallel.replicated(mesh))
    def init():
        dummy = jnp.zeros((1, config.image_size, config.image_size, 1), jnp.float32)
        variables = model.init({"params": init_rng, "dropout": init_rng}, dummy, train=False)
        params, batch_stats = variables["params"], variables.get("batch_stats", {})
        return {
            "params": params,
            "batch_stats": batch_stats,
            "opt_state": tx.init(params),
            # The average starts at the init. jit gives each output its own buffer, so the
            # average shares none with the live weights (the step donates both).
            "ema": {"params": params, "batch_stats": batch_stats} if config.ema else {},
        }

    # The non-partitionable threefry compiles 4-D kernel draws several times faster on CPU
    # (resnet-small init: ~7.5 s -> ~3 s); init is replicated, so nothing is lost.
    with jax.threefry_partitionable(False):
        v = init()
    return TrainState(
        step=jax.device_put(jnp.zeros((), jnp.int32), parallel.replicated(mesh)),
        params=v["params"],
        batch_stats=v["batch_stats"],
        opt_state=v["opt_state"],
        rng=jax.device_put(state_rng, parallel.replicated(mesh)),
        ema=v["ema"],
        apply_fn=model.apply,
        tx=tx,
    )


def train_step(
    state: TrainState,
    batch: dict[str, jax.Array],
    *,
    schedule: optax.Schedule,
    augment: AugmentConfig,
    objective: Objective,
    frozen_stats: bool = False,
    ema: float = 0.0,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer step on a global batch. Pure; jit it with `jit_train_step`.

    Args:
      state: the current TrainState (donated by the jitted version).
      batch: {"image": uint8 [B, H, W], "label": int32 [B], "mask": bool [B]}.
      objective: the loss of the model's kind (static; see `charjax.losses`).
      frozen_stats: keep the batch statistics as they are (a frozen backbone's).
      ema: the moving average's decay (`ema_decay`); used only when the state keeps one.
    Returns:
      (new state, metrics) with loss, the objective's metrics (accuracy; or recon, mse and
      kl), lr and l2 norms of grads and params.
    """
    rng = jax.random.fold_in(state.rng, state.step)
    aug_rng, model_rng = jax.random.split(rng)  # model_rng: dropout, or a VAE's latent noise
    x = augment_batch(aug_rng, model_input(batch["image"]), augment)  # [B, H, W, 1]

    def loss_fn(params):
        variables = {"params": params}
        if state.batch_stats:
            variables["batch_stats"] = state.batch_stats
        return objective.loss(state.apply_fn, variables, x, batch, model_rng)

    (loss, (batch_stats, objective_metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params
    )
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    batch_stats = state.batch_stats if frozen_stats else batch_stats
    params = optax.apply_updates(state.params, updates)
    new_state = state.replace(
        step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state
    )
    if state.ema:  # Polyak averaging: ema <- decay * ema + (1 - decay) * live
        step_size = 1.0 - ema_decay(state.step, ema)
        averaged = optax.incremental_update(new_state.live(), state.ema, step_size)
        new_state = new_state.replace(ema=averaged)
    metrics = {
        "loss": loss,
        **objective_metrics,
        "lr": schedule(state.step),
        "grad_norm": optax.tree.norm(grads),
        "param_norm": optax.tree.norm(params),
    }
    return new_state, metrics


def eval_step(
    state: TrainState, batch: dict[str, jax.Array], *, objective: Objective
) -> dict[str, jax.Array]:
    """Sums of the objective's terms over a batch's unmasked examples (see `summarize`)."""
    return objective.eval_sums(
        state.apply_fn, state.model_variables(), model_input(batch["image"]), batch
    )


def jit_train_step(config: TrainConfig, schedule: optax.Schedule, mesh: Mesh):
    """`train_step` jitted for the mesh: batch sharded on "data", state replicated, donated."""
    step = functools.partial(
        train_step,
        schedule=schedule,
        augment=AugmentConfig(strength=config.augment, outline=config.outline),
        objective=objective_for(config),
        frozen_stats=config.freeze == "backbone",
        ema=config.ema,
    )
    repl, sharded = parallel.replicated(mesh), parallel.data_sharded(mesh)
    return jax.jit(step, in_shardings=(repl, sharded), out_shardings=(repl, repl), donate_argnums=0)


def jit_eval_step(config: TrainConfig, mesh: Mesh):
    step = functools.partial(eval_step, objective=objective_for(config))
    repl, sharded = parallel.replicated(mesh), parallel.data_sharded(mesh)
    return jax.jit(step, in_shardings=(repl, sharded), out_shardings=repl)
