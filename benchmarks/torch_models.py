"""PyTorch references of charjax's classifiers, for side-by-side benchmarks only.

The same layers, shapes, paddings and initial weights as `charjax.models` (weights can be
copied over from a flax variables tree with `load_flax`, and `check_same_function` verifies
that both frameworks then compute the same logits). charjax itself never imports torch; this
file is used by the scripts in `benchmarks/` (`pip install -e '.[bench]'`).

Layout: torch's default NCHW. flax's SAME padding is asymmetric when the total is odd (the
extra row/column goes at the end), so convs pad explicitly with `F.pad` where needed.
"""

import math
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(low, high) padding of XLA/flax SAME along one axis."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv(nn.Conv2d):
    """nn.Conv2d with flax's SAME padding (symmetric when possible, else one extra at the end)."""

    def __init__(self, cin, cout, kernel, stride=1, groups=1, bias=True):
        super().__init__(cin, cout, kernel, stride, padding=0, groups=groups, bias=bias)

    def forward(self, x):
        k, s = self.kernel_size[0], self.stride[0]
        lo, hi = _same_pad(x.shape[-1], k, s)
        if lo == hi:  # symmetric: let the conv pad (cheaper than a separate copy)
            return F.conv2d(x, self.weight, self.bias, s, lo, 1, self.groups)
        return super().forward(F.pad(x, (lo, hi, lo, hi)))


def max_pool_2x2(x):
    # ceil_mode pads at the end like SAME; a 1x1 map stays 1x1, as in charjax.
    return F.max_pool2d(x, 2, 2, ceil_mode=True)


class CNN(nn.Module):
    """charjax.models.cnn.CNN: conv, 4 separable convs, 5 max pools, dense, dropout, dense."""

    def __init__(self, num_classes=62, widths=(8, 32, 72, 160, 512), hidden=178, dropout=0.5):
        super().__init__()
        self.conv = SameConv(1, widths[0], 3)
        self.separable = nn.ModuleList()
        for cin, cout in zip(widths[:-1], widths[1:], strict=True):
            self.separable.append(
                nn.Sequential(
                    SameConv(cin, cin, 3, groups=cin, bias=False),
                    nn.Conv2d(cin, cout, 1),
                )
            )
        self.hidden = nn.Linear(widths[-1], hidden)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, num_classes)

    def forward(self, x):  # [B, 1, H, W]
        x = max_pool_2x2(F.relu(self.conv(x)))
        for sep in self.separable:
            x = max_pool_2x2(F.relu(sep(x)))
        x = x.amax(dim=(2, 3))
        return self.out(self.dropout(F.relu(self.hidden(x))))


class ResNetBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv1, self.norm1 = SameConv(cin, cout, 3, bias=False), _bn(cout)
        self.conv2, self.norm2 = SameConv(cout, cout, 3, bias=False), _bn(cout)
        nn.init.zeros_(self.norm2.weight)  # as charjax: each block starts as the identity
        self.proj = None
        if cin != cout:
            self.proj = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), _bn(cout))

    def forward(self, x):
        y = F.relu(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return F.relu((x if self.proj is None else self.proj(x)) + y)


def _bn(c):
    return nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)  # flax momentum 0.9 == torch 0.1


class ResNet(nn.Module):
    """charjax.models.resnet.ResNet: a stem strided to ~16x16, then max-pool-downsampled stages."""

    def __init__(self, image_size, stage_sizes=(1, 1, 1), widths=(32, 64, 128), num_classes=62):
        super().__init__()
        stride = max(1, round(image_size / 16))
        kernel = 3 if stride <= 2 else stride + 1
        self.stem = SameConv(1, widths[0], kernel, stride, bias=False)
        self.stem_norm = _bn(widths[0])
        self.stages = nn.ModuleList()
        cin = widths[0]
        for blocks, width in zip(stage_sizes, widths, strict=True):
            stage = []
            for _ in range(blocks):
                stage.append(ResNetBlock(cin, width))
                cin = width
            self.stages.append(nn.Sequential(*stage))
        self.out = nn.Linear(widths[-1], num_classes)

    def forward(self, x):  # [B, 1, H, W]
        x = F.relu(self.stem_norm(self.stem(x)))
        for i, stage in enumerate(self.stages):
            if i > 0:
                x = max_pool_2x2(x)
            x = stage(x)
        return self.out(x.mean(dim=(2, 3)))


class Tiny(nn.Module):
    """charjax.models.cnn.Tiny (tests only; benchmarks/gpu.py --smoke): 2 convs, mean, dense."""

    def __init__(self, num_classes=62):
        super().__init__()
        self.conv1, self.conv2 = SameConv(1, 8, 3), SameConv(8, 16, 3)
        self.out = nn.Linear(16, num_classes)

    def forward(self, x):  # [B, 1, H, W]
        x = max_pool_2x2(F.relu(self.conv1(x)))
        return self.out(F.relu(self.conv2(x)).mean(dim=(2, 3)))


def build(arch: str, image_size: int) -> nn.Module:
    """The torch twin of a charjax registry name ("cnn-small", "resnet-small" or "tiny")."""
    if arch == "cnn-small":
        return CNN()
    if arch == "resnet-small":
        return ResNet(image_size)
    if arch == "tiny":
        return Tiny()
    raise KeyError(f"no torch reference for {arch!r}")


def _conv_weight(kernel):  # flax HWIO -> torch OIHW
    return torch.from_numpy(np.array(np.asarray(kernel).transpose(3, 2, 0, 1), np.float32))


def _t(a):
    return torch.from_numpy(np.array(a, np.float32))  # a writable copy


def load_flax(module: nn.Module, variables) -> None:
    """Copies a charjax (flax) variables tree into the torch twin, in place."""
    p = variables["params"]
    stats = variables.get("batch_stats", {})

    def norm(bn, name):
        bn.weight.data, bn.bias.data = _t(p[name]["scale"]), _t(p[name]["bias"])
        bn.running_mean.data, bn.running_var.data = _t(stats[name]["mean"]), _t(stats[name]["var"])

    def dense(lin, name):
        lin.weight.data, lin.bias.data = _t(np.asarray(p[name]["kernel"]).T), _t(p[name]["bias"])

    with torch.no_grad():
        if isinstance(module, Tiny):
            for conv, name in ((module.conv1, "Conv_0"), (module.conv2, "Conv_1")):
                conv.weight.data, conv.bias.data = (
                    _conv_weight(p[name]["kernel"]),
                    _t(p[name]["bias"]),
                )
            dense(module.out, "Dense_0")
            return
        if isinstance(module, CNN):
            module.conv.weight.data = _conv_weight(p["Conv_0"]["kernel"])
            module.conv.bias.data = _t(p["Conv_0"]["bias"])
            for i, sep in enumerate(module.separable):
                q = p[f"SeparableConv_{i}"]
                sep[0].weight.data = _conv_weight(q["depthwise"]["kernel"])
                sep[1].weight.data = _conv_weight(q["pointwise"]["kernel"])
                sep[1].bias.data = _t(q["pointwise"]["bias"])
            dense(module.hidden, "Dense_0")
            dense(module.out, "Dense_1")
            return
        module.stem.weight.data = _conv_weight(p["stem_conv"]["kernel"])
        norm(module.stem_norm, "stem_norm")
        blocks = [b for stage in module.stages for b in stage]
        for i, b in enumerate(blocks):
            name = f"ResNetBlock_{i}"
            q, s = p[name], stats[name]
            b.conv1.weight.data = _conv_weight(q["Conv_0"]["kernel"])
            b.conv2.weight.data = _conv_weight(q["Conv_1"]["kernel"])
            for bn, nname in ((b.norm1, "BatchNorm_0"), (b.norm2, "BatchNorm_1")):
                bn.weight.data, bn.bias.data = _t(q[nname]["scale"]), _t(q[nname]["bias"])
                bn.running_mean.data = _t(s[nname]["mean"])
                bn.running_var.data = _t(s[nname]["var"])
            if b.proj is not None:
                b.proj[0].weight.data = _conv_weight(q["conv_proj"]["kernel"])
                bn = b.proj[1]
                bn.weight.data, bn.bias.data = (
                    _t(q["norm_proj"]["scale"]),
                    _t(q["norm_proj"]["bias"]),
                )
                bn.running_mean.data = _t(s["norm_proj"]["mean"])
                bn.running_var.data = _t(s["norm_proj"]["var"])
        dense(module.out, "Dense_0")


def check_same_function(arch: str, image_size: int, atol=2e-4) -> float:
    """Max |logit difference| between charjax and the torch twin on random images (eval mode),
    with random charjax variables copied into the twin.

    Raises AssertionError when the twin is not the same function (a broken benchmark).
    """
    import jax  # only here: the benchmarks' torch workers need JAX for nothing else

    from charjax.models import get_model

    model = get_model(arch)
    rng = np.random.default_rng(1)
    x = np.zeros((1, image_size, image_size, 1), np.float32)
    # The non-partitionable threefry compiles several times faster on CPU (tiny: 5 s, not 22 s
    # on a loaded 2-core machine), as in train_step.py; the weights are perturbed below anyway.
    with jax.threefry_partitionable(False):
        variables = jax.jit(model.init)({"params": jax.random.key(0)}, x)
    # Perturbed, so that no zero-initialised scale hides a layer from the comparison.
    variables = jax.tree.map(
        lambda a: np.asarray(a) + 0.1 * rng.normal(size=a.shape).astype(np.float32), variables
    )
    if "batch_stats" in variables:
        variables["batch_stats"] = jax.tree.map(lambda a: np.abs(a) + 0.5, variables["batch_stats"])
    twin = build(arch, image_size).eval()
    load_flax(twin, variables)
    x = np.random.default_rng(0).uniform(size=(4, image_size, image_size, 1)).astype(np.float32)
    # Full float32: on a GPU, JAX's default precision would compute convs and matmuls in TF32.
    with jax.default_matmul_precision("float32"):
        ours = np.asarray(jax.jit(partial(model.apply, train=False))(variables, x))
    with torch.no_grad():
        theirs = twin(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    err = float(np.abs(ours - theirs).max())
    assert err < atol * max(1.0, float(np.abs(ours).max())), f"{arch} {image_size}px: {err}"
    return err
