"""Model size and cost: parameter counts and forward FLOPs, without running the model."""

from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp

from charjax.models import MODELS, get_model


def _abstract_variables(model: nn.Module, image_size: int):
    x = jax.ShapeDtypeStruct((1, image_size, image_size, 1), jnp.float32)
    keys = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
    return jax.eval_shape(lambda x: model.init(keys, x, train=False), x), x


def count_params(model: nn.Module, image_size: int) -> int:
    """Number of trainable parameters (batch-norm statistics not included).

    Uses `jax.eval_shape`, so nothing is initialised or computed.
    """
    variables, _ = _abstract_variables(model, image_size)
    return sum(leaf.size for leaf in jax.tree.leaves(variables["params"]))


def forward_flops(model: nn.Module, image_size: int) -> float:
    """FLOPs of one inference forward pass on one image, as XLA counts them.

    Compiles `apply` for a batch of 1 on the default backend and reads its cost analysis
    (a multiply-add counts as 2 FLOPs; conv taps that fall on SAME padding are not counted,
    so a 3x3 conv on a 4x4 map counts ~70% of the textbook figure). Returns NaN if the
    backend gives no FLOP count.
    """
    variables, x = _abstract_variables(model, image_size)
    compiled = jax.jit(lambda v, x: model.apply(v, x, train=False)).lower(variables, x).compile()
    cost = compiled.cost_analysis()
    # A dict in current jax; older versions returned a list with one dict per device program.
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else None
    return float(cost.get("flops", float("nan"))) if cost else float("nan")


@dataclass(frozen=True)
class ModelInfo:
    name: str
    kind: str
    description: str
    params: int
    mflops: float  # forward, per image, at `image_size`
    image_size: int


def describe_models(image_size: int = 32, num_classes: int = 62) -> list[ModelInfo]:
    """One `ModelInfo` per registered model, at the given image size."""
    infos = []
    for name, spec in MODELS.items():
        model = get_model(name, num_classes=num_classes)
        infos.append(
            ModelInfo(
                name=name,
                kind=spec.kind,
                description=spec.description,
                params=count_params(model, image_size),
                mflops=forward_flops(model, image_size) / 1e6,
                image_size=image_size,
            )
        )
    return infos
