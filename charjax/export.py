"""A trained classifier as an ONNX model, for onnxruntime outside Python (`charjax export`).

The exported model computes what `Predictor.probabilities` computes, in one graph:

- input "images": uint8 [N, S, S], the output of charjax's preprocessing (ink bright on black,
  cropped, padded square, resized to S = the run's image size); N is dynamic. With
  input="float32" the input is float32 [N, S, S] already scaled to [0, 1].
- output "probabilities": float32 [N, num_classes], softmax over the run's class list.
- the batch statistics folded into the convolutions before them, dropout gone.
- what a user outside Python needs to feed it (class list, preprocessing spec, input layout)
  in the model's metadata_props and in a JSON file beside it (model.onnx -> model.json).

Why the graph is written here with onnx's helper API instead of converted by jax2onnx: jax2onnx
0.17 pins orbax-checkpoint below 0.11.37 (so installing it downgrades the orbax charjax's
checkpoints are written with) and pulls in a dozen unrelated packages (huggingface-hub, netron,
equinox, ...); its graphs also wrap every conv in NHWC/NCHW transposes. The three classifier
architectures are a handful of standard ops, so each has a short builder below that reads the
module's attributes and parameter tree; tests/test_export.py checks every builder against both
of the model's formulations (`fast` True and False), so a change to a model that a builder does
not follow fails there. Plain ONNX ops also mean the CPU formulations of
`charjax.models.layers` never reach the file: they compute the same function as these ops.
"""

import json
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import flax.linen as nn
import numpy as np

from charjax.atomic import atomic_path
from charjax.errors import CharjaxError
from charjax.labels import CLASSES
from charjax.models.cnn import CNN, Tiny
from charjax.models.resnet import ResNet, stem_stride
from charjax.predict import PRETRAINED, Predictor, default_checkpoint

INPUT_DTYPES = ("uint8", "float32")
# Opset 17 and IR version 8 (onnx 1.12, 2022): read by every onnxruntime since 1.12, including
# onnxruntime-web and -mobile; nothing here needs a newer op.
OPSET = 17
IR_VERSION = 8
# charjax.models.resnet's batch norm epsilon (set where it builds its norm partial).
BATCH_NORM_EPSILON = 1e-5


@dataclass(frozen=True)
class ExportConfig:
    """What `charjax export` writes.

    Attributes:
      checkpoint: a run directory, a checkpoint directory, or "pretrained" (the bundled model).
      out: the .onnx file to write; its description goes beside it as .json.
      input_dtype: "uint8" (preprocessed pixels 0..255) or "float32" (the same divided by 255).
    """

    checkpoint: str
    out: Path
    input_dtype: str = "uint8"


@dataclass(frozen=True)
class ExportResult:
    """What was written: the model, its JSON description, and the model's input shape."""

    model_path: Path
    description_path: Path
    arch: str
    input_shape: tuple
    size_bytes: int


def export_onnx(config: ExportConfig) -> ExportResult:
    """Loads a classifier run and writes it as ONNX plus its JSON description.

    Both files appear only once both are complete; an old model at `out` stays as it was when
    anything fails.

    Raises:
      CharjaxError: a missing run, a run that is not a classifier, an output path that cannot
        be written, or onnx not installed.
    """
    out = Path(config.out)
    _check_out(out)
    if config.input_dtype not in INPUT_DTYPES:
        raise CharjaxError(f"--input must be one of {', '.join(INPUT_DTYPES)}")
    checkpoint = default_checkpoint() if config.checkpoint == PRETRAINED else config.checkpoint
    if not Path(checkpoint).exists():
        raise CharjaxError(f"no run or checkpoint at {checkpoint}")
    predictor = Predictor.load(checkpoint)
    classes = "".join(predictor.meta.get("classes", CLASSES))
    description = describe(predictor, config.input_dtype, classes, source=str(config.checkpoint))
    model = onnx_model(
        predictor.model, predictor.variables, predictor.spec.size, config.input_dtype, description
    )
    data = model.SerializeToString()
    json_path = out.with_suffix(".json")
    try:
        with atomic_path(out) as tmp_model, atomic_path(json_path) as tmp_json:
            tmp_model.write_bytes(data)
            tmp_json.write_text(json.dumps(description, indent=2) + "\n")
    except OSError as e:
        raise CharjaxError(f"cannot write {out}: {e.strerror or e}") from None
    shape = tuple(description["input"]["shape"])
    return ExportResult(out, json_path, predictor.config.arch, shape, len(data))


def _check_out(out: Path) -> None:
    """Refuses an output path that cannot become a model file, before anything is loaded."""
    if out.suffix != ".onnx":
        raise CharjaxError(f"--out must end in .onnx (the description goes beside it), got {out}")
    for path in (out, out.with_suffix(".json")):
        if path.is_dir():  # atomic_path would replace it
            raise CharjaxError(f"cannot write {path}: it is a directory")
    parent = next((p for p in out.parents if p.exists()), Path("."))
    if not parent.is_dir():
        raise CharjaxError(f"cannot write {out}: {parent} is not a directory")


def describe(predictor: Predictor, input_dtype: str, classes: str, source: str) -> dict:
    """What the exported model expects and returns, for its metadata and the JSON beside it."""
    size = predictor.spec.size
    scale = "0..255" if input_dtype == "uint8" else "0..1 (pixel / 255)"
    return {
        "format": "charjax-onnx 1",
        "producer": f"charjax {version('charjax')}",
        "source": source,
        "arch": predictor.config.arch,
        "step": predictor.meta.get("step"),
        "classes": classes,
        "input": {
            "name": "images",
            "dtype": input_dtype,
            "shape": ["N", size, size],
            "values": f"{scale}, ink bright on a black background",
        },
        "output": {
            "name": "probabilities",
            "dtype": "float32",
            "shape": ["N", len(classes)],
            "values": "softmax; column j is the probability of classes[j]",
        },
        "preprocess": predictor.spec.to_dict(),
        "preprocess_steps": (
            "grayscale; ink = the side that differs from the image border (polarity 'auto'), "
            "made bright on black; crop to the pixels above `threshold` of the ink range; pad "
            "to a square with `margin` * size empty border; resize to size x size with "
            "antialiasing (charjax.preprocess.preprocess)"
        ),
    }


def onnx_model(module: nn.Module, variables: dict, size: int, input_dtype: str, description: dict):
    """The ONNX ModelProto of a classifier's inference function at image size `size`.

    Args:
      module: the flax classifier (its attributes give the layer structure).
      variables: its {"params", "batch_stats"} arrays.
      size: the input side in pixels.
      input_dtype: "uint8" or "float32" (see the module docstring).
      description: string-valued entries become metadata_props; others are stored as JSON.

    Raises:
      CharjaxError: for an architecture without a builder, or onnx not installed.
    """
    onnx = _import_onnx()
    g = _Graph(onnx)
    params = _numpy(variables.get("params", {}))
    stats = _numpy(variables.get("batch_stats", {}))
    x = "images"
    if input_dtype == "uint8":
        x = g.op("Div", [g.op("Cast", [x], to=onnx.TensorProto.FLOAT), g.const("255", 255.0)])
    x = g.op("Unsqueeze", [x, g.const("channel_axis", np.array([1], np.int64))])  # [N, 1, S, S]
    if isinstance(module, ResNet):
        logits = _resnet(g, x, size, module, params, stats)
    elif isinstance(module, CNN):
        logits = _cnn(g, x, size, module, params)
    elif isinstance(module, Tiny):
        logits = _tiny(g, x, size, params)
    else:
        raise CharjaxError(f"charjax export has no ONNX builder for {type(module).__name__}")
    g.nodes.append(onnx.helper.make_node("Softmax", [logits], ["probabilities"], axis=-1))
    num_classes = int(params[_last_dense(params)]["bias"].shape[0])
    elem = onnx.TensorProto.UINT8 if input_dtype == "uint8" else onnx.TensorProto.FLOAT
    graph = onnx.helper.make_graph(
        g.nodes,
        "charjax_classifier",
        [onnx.helper.make_tensor_value_info("images", elem, ["N", size, size])],
        [
            onnx.helper.make_tensor_value_info(
                "probabilities", onnx.TensorProto.FLOAT, ["N", num_classes]
            )
        ],
        initializer=g.initializers,
    )
    model = onnx.helper.make_model(
        graph,
        opset_imports=[onnx.helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="charjax",
        producer_version=version("charjax"),
        doc_string="charjax character classifier; see metadata 'input', 'preprocess', 'classes'",
    )
    onnx.helper.set_model_props(
        model, {k: v if isinstance(v, str) else json.dumps(v) for k, v in description.items()}
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def _import_onnx():
    # Lazy: onnx is the optional `export` extra; the rest of charjax works without it.
    try:
        import onnx
    except ImportError:
        raise CharjaxError(
            "charjax export needs the onnx package: pip install 'charjax[export]'"
        ) from None
    return onnx


def _numpy(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _numpy(v) for k, v in tree.items()}
    return np.asarray(tree, np.float32)


def _last_dense(params: dict) -> str:
    return max((k for k in params if k.startswith("Dense_")), key=lambda k: int(k.split("_")[1]))


class _Graph:
    """Nodes and initializers being collected, each output under a fresh name."""

    def __init__(self, onnx):
        self.onnx = onnx
        self.nodes: list = []
        self.initializers: list = []
        self._count = 0

    def _name(self, base: str) -> str:
        self._count += 1
        return f"{base}_{self._count}"

    def const(self, base: str, value) -> str:
        array = np.asarray(value)
        array = array if array.dtype == np.int64 else array.astype(np.float32)
        name = self._name(base)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, inputs: list[str], **attrs) -> str:
        out = self._name(op_type.lower())
        self.nodes.append(self.onnx.helper.make_node(op_type, inputs, [out], **attrs))
        return out


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """lax's SAME padding of one spatial axis: (before, after); the extra pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _conv(g, x, size, kernel, bias=None, stride=1, groups=1) -> tuple[str, int]:
    """A SAME conv of an NCHW map of side `size` with a flax HWIO kernel: (output, its side)."""
    kh, kw = kernel.shape[:2]
    before, after = _same_pads(size, kh, stride)
    inputs = [x, g.const("w", np.transpose(kernel, (3, 2, 0, 1)))]  # HWIO -> OIHW
    if bias is not None:
        inputs.append(g.const("b", bias))
    out = g.op(
        "Conv",
        inputs,
        kernel_shape=[kh, kw],
        strides=[stride, stride],
        pads=[before, before, after, after],
        group=groups,
    )
    return out, -(-size // stride)


def _max_pool_2x2(g, x, size) -> tuple[str, int]:
    """`charjax.models.cnn.max_pool_2x2`: SAME padding, so an odd side gets one padded row
    (MaxPool pads never win a max, as lax's -inf padding)."""
    pad = size % 2
    return g.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, pad, pad]), (
        size + pad
    ) // 2


def _dense(g, x, p) -> str:
    return g.op("Gemm", [x, g.const("w", p["kernel"]), g.const("b", p["bias"])])


def _global(g, x, how: str) -> str:
    return g.op("Flatten", [g.op(how, [x])], axis=1)  # [N, C, 1, 1] -> [N, C]


def _tiny(g, x, size, params) -> str:
    """`charjax.models.cnn.Tiny`."""
    x, size = _conv(g, x, size, params["Conv_0"]["kernel"], params["Conv_0"]["bias"])
    x, size = _max_pool_2x2(g, g.op("Relu", [x]), size)
    x, size = _conv(g, x, size, params["Conv_1"]["kernel"], params["Conv_1"]["bias"])
    x = _global(g, g.op("Relu", [x]), "GlobalAveragePool")
    return _dense(g, x, params["Dense_0"])


def _cnn(g, x, size, module: CNN, params) -> str:
    """`charjax.models.cnn.CNN` (cnn-small): dropout is the identity at inference."""
    x, size = _conv(g, x, size, params["Conv_0"]["kernel"], params["Conv_0"]["bias"])
    x, size = _max_pool_2x2(g, g.op("Relu", [x]), size)
    for i in range(len(module.widths) - 1):
        sep = params[f"SeparableConv_{i}"]
        depthwise = sep["depthwise"]["kernel"]  # [3, 3, 1, C] -> [C, 1, 3, 3], group C
        x, _ = _conv(g, x, size, depthwise, groups=depthwise.shape[-1])
        x, _ = _conv(g, x, size, sep["pointwise"]["kernel"], sep["pointwise"]["bias"])
        x, size = _max_pool_2x2(g, g.op("Relu", [x]), size)
    x = _global(g, x, "GlobalMaxPool")
    x = g.op("Relu", [_dense(g, x, params["Dense_0"])])
    return _dense(g, x, params["Dense_1"])


def _conv_bn(g, x, size, kernel, norm, stats, stride=1) -> tuple[str, int]:
    """A bias-free conv followed by inference batch norm, folded into one conv with a bias:
    (x - mean) * scale / sqrt(var + eps) + bias is a per-output-channel affine map."""
    k = norm["scale"].astype(np.float64) / np.sqrt(
        stats["var"].astype(np.float64) + BATCH_NORM_EPSILON
    )
    bias = norm["bias"] - stats["mean"] * k
    return _conv(g, x, size, kernel * k, bias, stride=stride)


def _resnet(g, x, size, module: ResNet, params, stats) -> str:
    """`charjax.models.resnet.ResNet`, batch norm folded into the convs."""
    if module.act is not nn.relu:
        raise CharjaxError(f"charjax export supports ReLU ResNets only, not {module.act}")
    stride = stem_stride(size, module.first_stage_size)
    kernel = params["stem_conv"]["kernel"]
    x, size = _conv_bn(g, x, size, kernel, params["stem_norm"], stats["stem_norm"], stride)
    x = g.op("Relu", [x])
    index = 0
    for stage, blocks in enumerate(module.stage_sizes):
        if stage > 0:
            x, size = _max_pool_2x2(g, x, size)
        for _ in range(blocks):
            p, s = params[f"ResNetBlock_{index}"], stats[f"ResNetBlock_{index}"]
            index += 1
            y, _ = _conv_bn(g, x, size, p["Conv_0"]["kernel"], p["BatchNorm_0"], s["BatchNorm_0"])
            y = g.op("Relu", [y])
            y, _ = _conv_bn(g, y, size, p["Conv_1"]["kernel"], p["BatchNorm_1"], s["BatchNorm_1"])
            if "conv_proj" in p:
                kernel, norm, stat = p["conv_proj"]["kernel"], p["norm_proj"], s["norm_proj"]
                x, _ = _conv_bn(g, x, size, kernel, norm, stat)
            x = g.op("Relu", [g.op("Add", [x, y])])
    x = _global(g, x, "GlobalAveragePool")
    return _dense(g, x, params["Dense_0"])
