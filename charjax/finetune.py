"""Fine-tuning: start a classifier from the bundled model's (or a run's) arrays.

    charjax train --init-from pretrained --data folder:my_samples --workdir runs/mine

A fine-tuning run is an ordinary run (`charjax.fit.fit`: exact resume, metrics, checkpoints,
Ctrl-C) whose first state holds the source's params and batch statistics instead of a fresh
initialisation, with a new optimizer. What differs is decided here, before the run starts:

- the config (`finetune_config`): the architecture and image size come from the source (an
  explicit option that disagrees is an error), and the options the user did not give take the
  fine-tuning defaults of `FINETUNE` (a lower peak learning rate, a short warmup, few steps),
  which suit a few hundred images;
- the data: a small dataset of the user's own images gets a replay share of the font data
  mixed in (`folder:mine` becomes `folder:mine:0.5+fonts:0.5`), so the model keeps what it
  knew; the console says so;
- validation (`validation_arrays`): the user's held-back images (`folder:` holds back one
  sample of every class that has >= 3), else a sample of the replay's val split;
- freezing (`charjax.step.make_optimizer`, `head_labels` there): with `--freeze backbone` only
  the last dense layer (the one with NUM_CLASSES outputs) is updated, and the batch statistics
  stay the source's.
"""

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

from charjax import parallel
from charjax.checkpoint import check_variables, load_for_inference
from charjax.config import TrainConfig
from charjax.data.cache import Cache
from charjax.data.sources import data_parts, resolve_data
from charjax.errors import CharjaxError
from charjax.labels import CLASSES, NUM_CLASSES
from charjax.models import MODELS, build_model
from charjax.predict import PRETRAINED, PRETRAINED_DIR

# Options a fine-tuning run takes from its source; giving another value is an error.
INHERITED = ("arch", "image_size", "latent_dim")


@dataclass(frozen=True)
class FinetuneDefaults:
    """What a fine-tuning run uses for the options the user leaves out.

    Tuned with benchmarks/finetune_writers.py: 5 samples per class of an unseen writer reach
    ~97% (case-insensitive) in well under a minute on a 2-core CPU, compile included.

    Attributes:
      lr, warmup, steps, batch_size, eval_every, checkpoint_every, log_every: the
        TrainConfig fields of the same names.
      replay: the `--data` source mixed into a small dataset of the user's own images.
      replay_weight: its share of the train images.
      small: a dataset with fewer train images than this counts as small.
      val_cap: at most this many images of the replay's val split validate the run.
    """

    lr: float = 5e-4
    warmup: float = 0.1
    steps: int = 100
    batch_size: int = 64
    eval_every: int = 0
    checkpoint_every: int = 50
    log_every: int = 10
    replay: str = "fonts"
    replay_weight: float = 0.5
    small: int = 5000
    val_cap: int = 2048

    def config_fields(self) -> dict[str, Any]:
        names = {f.name for f in dataclasses.fields(TrainConfig)}
        return {k: v for k, v in dataclasses.asdict(self).items() if k in names}


FINETUNE = FinetuneDefaults()


@dataclass(frozen=True)
class Source:
    """The run a fine-tuning starts from: its checkpoint step, arrays and meta."""

    name: str  # as given to --init-from
    step_dir: Path  # the step directory read (an older one when the newest is damaged)
    variables: dict
    meta: dict

    @property
    def config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.meta["config"])

    def provenance(self) -> dict[str, Any]:
        """What config.json and every checkpoint record about where the run started."""
        return {
            "init_from": self.name,
            "path": str(self.step_dir.resolve()),
            "step": int(self.step_dir.name),
            "data": self.meta.get("data", {}).get("spec"),
        }


@functools.cache
def load_source(init_from: str) -> Source:
    """Reads the run named by `--init-from` ("pretrained" or a run/checkpoint directory).

    Raises:
      CharjaxError: a missing or damaged run, a generative model, another class set, arrays
        that do not fit the model its config names.
    """
    path = PRETRAINED_DIR if init_from == PRETRAINED else Path(init_from)
    if not path.exists():
        raise CharjaxError(f"--init-from {init_from}: no such run (a workdir, or 'pretrained')")
    variables, meta = load_for_inference(path)
    kind = meta.get("kind", "classifier")
    if kind != "classifier":
        raise CharjaxError(
            f"--init-from {init_from}: it holds a {kind} model; only classifiers can be fine-tuned"
        )
    if meta.get("classes", CLASSES) != CLASSES:
        raise CharjaxError(
            f"--init-from {init_from}: it was trained on another class set "
            f"({len(meta['classes'])} classes, not charjax's {NUM_CLASSES})"
        )
    config = TrainConfig.from_dict(meta["config"])
    if config.arch not in MODELS:
        raise CharjaxError(f"--init-from {init_from}: unknown model {config.arch!r}")
    check_variables(build_model(config), variables, config.image_size, init_from)
    return Source(init_from, Path(meta["loaded_from"]), variables, meta)


def _with_replay(data: str, size: int, data_dir: str | None, say: Callable) -> str:
    """`data`, or `data` with the replay mixed in when it is a small set of the user's own."""
    parts = data_parts(data)
    # One dataset of your own, unweighted; a mixture someone wrote out is left as it is.
    if len(parts) > 1 or parts[0].weight is not None or parts[0].kind not in ("path", "folder"):
        return data
    n_train = len(resolve_data(data, size, data_dir, progress=False).indices("train"))
    if n_train >= FINETUNE.small:
        return data
    w = FINETUNE.replay_weight
    mixed = f"{dataclasses.replace(parts[0], weight=1 - w).spec()}+{FINETUNE.replay}:{w:g}"
    say(
        f"Small dataset ({n_train} train images): mixing in a replay of "
        f"{FINETUNE.replay!r} so the model keeps what it knew: --data {mixed} "
        "(give --data with weights to choose otherwise)."
    )
    return mixed


def finetune_config(options: dict[str, Any], explicit: set[str], say=print) -> TrainConfig:
    """The config of `charjax train --init-from ...`.

    Args:
      options: every TrainConfig field, as the CLI parsed them (defaults included).
      explicit: the names of the options the user gave; the others take FINETUNE's values.
      say: where the note about a replay goes.
    Raises:
      CharjaxError: for a bad source (see `load_source`) or an option that clashes with it.
    """
    source = load_source(options["init_from"])
    inherited = source.config
    options = dict(options)
    for name in INHERITED:
        theirs = getattr(inherited, name)
        if name in explicit and options[name] != theirs:
            flag = "--" + name.replace("_", "-")
            raise CharjaxError(
                f"{flag} {options[name]} clashes with --init-from {options['init_from']}, "
                f"whose model has {name.replace('_', ' ')} {theirs}; leave {flag} out"
            )
        options[name] = theirs
    for name, value in FINETUNE.config_fields().items():
        if name not in explicit:
            options[name] = value
    if "epochs" in explicit and "steps" not in explicit:
        options["steps"] = None  # --epochs asks for passes over the data, not FINETUNE.steps
    if "data" in explicit:
        options["data"] = _with_replay(
            options["data"], options["image_size"], options["data_dir"], say
        )
    return TrainConfig(**options)


def check_data(config: TrainConfig, cache: Cache) -> None:
    """Refuses data preprocessed otherwise than the source's training data."""
    expected = load_source(config.init_from).meta["preprocess"]
    if cache.meta.get("preprocess") != expected:
        raise CharjaxError(
            f"--data {config.data} was preprocessed with {cache.meta.get('preprocess')}, but "
            f"--init-from {config.init_from} expects {expected}; prepare the data again"
        )


def _concat(arrays: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([a[k] for a in arrays]) for k in ("image", "label")}


def validation_arrays(config: TrainConfig, say) -> dict[str, np.ndarray]:
    """The val images of a fine-tuning run, and a line saying which they are.

    The user's own held-back images when there are any (those of the `folder:` parts, which
    hold back one per class with >= 3 samples; without one, of prepared datasets); else up
    to `FINETUNE.val_cap` images of the other parts' val splits, drawn with a fixed seed, so a
    handful of images still gets a meaningful number.
    """
    size = config.image_size
    parts = data_parts(config.data)
    caches = [(p, resolve_data(p.text, size, config.data_dir, progress=False)) for p in parts]
    # Your own images: the folder: parts, else prepared datasets; the rest is replay.
    yours = ("folder",) if any(p.kind == "folder" for p in parts) else ("folder", "path")
    own = [c.arrays("val") for p, c in caches if p.kind in yours]
    own = [a for a in own if len(a["label"])]
    if own:
        val = _concat(own)
        folders = yours == ("folder",)
        which = "held-back images of your own" if folders else "val images of your prepared data"
        say(f"Validating on {len(val['label'])} {which}.")
        return val
    replay = [c.arrays("val") for p, c in caches if p.kind not in yours]
    replay = [a for a in replay if len(a["label"])]
    if not replay:
        say("No validation: no class of your data has 3 samples and there is no replay.")
        return {"image": np.zeros((0, size, size), np.uint8), "label": np.zeros(0, np.int32)}
    val = _concat(replay)
    if len(val["label"]) > FINETUNE.val_cap:
        keep = np.sort(np.random.default_rng(0).permutation(len(val["label"]))[: FINETUNE.val_cap])
        val = {k: v[keep] for k, v in val.items()}
    say(
        f"Validating on {len(val['label'])} images of the replay's val split "
        "(no class of your data has 3 samples to hold one back)."
    )
    return val


def initial_state(state, config: TrainConfig, mesh):
    """A fresh TrainState with the source's params and batch statistics, replicated (and as the
    start of its moving average, if it keeps one)."""
    variables = load_source(config.init_from).variables
    host = jax.device_get(
        {"params": variables["params"], "batch_stats": variables.get("batch_stats") or {}}
    )
    # Through host memory: the step donates the state, which must not take the cached
    # source's own buffers with it (a second run in this process starts from them again).
    # Each device_put makes new buffers, so the average and the live weights share none.
    put = lambda: jax.device_put(host, parallel.replicated(mesh))
    arrays = put()
    return state.replace(
        params=arrays["params"], batch_stats=arrays["batch_stats"], ema=put() if state.ema else {}
    )
