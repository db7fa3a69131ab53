"""Accuracy of a trained classifier on a prepared dataset split or directly on an image folder;
reconstruction error (and KL) of an autoencoder, VAE or CVAE on the same data.

charjax eval --checkpoint runs/resnet --split test --json
charjax eval --checkpoint runs/resnet --data folder:my_handwriting/
"""

from pathlib import Path
from typing import Any

import numpy as np

from charjax.checkpoint import load_for_inference
from charjax.data.folder import load_folder_images
from charjax.data.sources import resolve_data
from charjax.errors import CharjaxError
from charjax.generate import Generator
from charjax.labels import CLASSES, parse_charset, restrict
from charjax.loaded import LoadedRun, run_kind
from charjax.losses import classification_hits
from charjax.models.autoencoder import GENERATIVE_KINDS
from charjax.predict import Predictor, default_checkpoint
from charjax.preprocess import NO_INK, has_ink
from charjax.viz.report import write_report


def load_eval_data(predictor: LoadedRun, data: str | None, split: str):
    """(uint8 images [N, S, S], int labels [N], description) for an eval request.

    `folder:PATH` reads images through the checkpoint's own preprocessing; anything else is a
    `--data` spec (default: the run's own dataset) and its split.
    """
    return _load_eval_data(predictor, data, split)[:3]


def _load_eval_data(predictor: LoadedRun, data: str | None, split: str):
    """`load_eval_data`'s answer and the files of a folder it skipped, {reason: [names]}."""
    if data and data.startswith("folder:"):
        path = Path(data.removeprefix("folder:"))
        images, labels, folder = load_folder_images(path, predictor.spec)
        return images, labels, f"folder {path}", folder.skipped
    spec = data or predictor.meta["data"]["path"]
    cache = resolve_data(spec, predictor.image_size, predictor.config.data_dir, progress=True)
    if cache.meta.get("preprocess") != predictor.spec.to_dict():
        raise CharjaxError(
            f"dataset {cache.path} was preprocessed differently from the model's training data; "
            "evaluate on images with --data folder:PATH instead"
        )
    arrays = cache.arrays(split)
    if not len(arrays["label"]):
        raise CharjaxError(f"dataset {cache.path} has no {split!r} examples")
    return arrays["image"], arrays["label"], f"{cache.path} [{split}]", {}


def accuracy_report(probs: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """n, top1, top5, top1_case_insensitive, per_class and the confusion matrix."""
    labels = np.asarray(labels)
    hits = {k: np.asarray(v) for k, v in classification_hits(probs, labels).items()}
    top1 = probs.argmax(1)
    per_class = {}
    for i, c in enumerate(CLASSES):
        sel = labels == i
        if sel.any():
            per_class[c] = float((top1[sel] == i).mean())
    confusion = np.zeros((len(CLASSES), len(CLASSES)), np.int64)
    np.add.at(confusion, (labels, top1), 1)
    return {
        "n": int(len(labels)),
        "top1": float(hits["top1"].mean()),
        "top5": float(hits["top5"].mean()),
        "top1_case_insensitive": float(hits["top1_case_insensitive"].mean()),
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }


def evaluate_checkpoint(
    checkpoint=None,
    data: str | None = None,
    split: str = "test",
    report_dir=None,
    charset: str | None = None,
) -> dict:
    """Evaluates a checkpoint. See `accuracy_report` for the keys; adds `data` and `checkpoint`.

    `checkpoint` None means the bundled model (whose training data is not on this machine:
    give it `data`).

    With `charset` (`charjax.labels.parse_charset`), the answers are restricted to that set
    (probabilities renormalised over it) and scored over the images whose label is in it;
    adds `charset` and `excluded` (how many images were left out).

    With `report_dir`, also writes the pictures and report.md of `charjax.viz.report` there and
    adds `report` (the path of report.md).

    An autoencoder, VAE or CVAE gets `Generator.evaluate`'s keys instead (n, loss, recon, mse
    and, for the VAEs, kl), with `kind`, `data` and `checkpoint`.
    """
    checkpoint = default_checkpoint() if checkpoint is None else checkpoint
    allowed = None if charset is None else parse_charset(charset)  # before the slow load
    variables, meta = load_for_inference(checkpoint)  # once: the meta says which kind to build
    read = _which_checkpoint(checkpoint, meta)
    if run_kind(meta) in GENERATIVE_KINDS:
        if report_dir is not None or charset is not None:
            option = "--report" if report_dir is not None else "--charset"
            raise CharjaxError(
                f"{option} is about a classifier's answers; this is a generative run"
            )
        gen = Generator.from_loaded(variables, meta, str(checkpoint))
        images, labels, where = load_eval_data(gen, data, split)
        report = gen.evaluate(images, labels)
        return {"checkpoint": str(checkpoint), **read, "data": where, "kind": gen.kind, **report}
    predictor = Predictor.from_loaded(variables, meta, str(checkpoint))
    images, labels, where, skipped = _load_eval_data(predictor, data, split)
    # A blank image gets no guess, so it is not scored: counted and named instead (a folder's
    # are already among its skipped files).
    inked = np.array([has_ink(x) for x in images], bool)
    if not inked.all():
        skipped = {**skipped, NO_INK: [f"image {i}" for i in np.flatnonzero(~inked)]}
        images, labels = images[inked], np.asarray(labels)[inked]
    if not len(labels):
        raise CharjaxError(f"{where}: every image has {NO_INK}")
    restriction = {}
    if allowed is not None:
        images, labels, restriction = _within_charset(images, labels, allowed, charset)
    probs = predictor.probabilities(images)
    if allowed is not None:
        probs = restrict(probs, allowed)
    report = {"checkpoint": str(checkpoint), **read, "data": where, **restriction}
    if skipped:
        report["skipped"] = skipped
    report.update(accuracy_report(probs, labels))
    if report_dir is not None:
        report["report"] = str(write_report(report_dir, images, labels, probs, report))
    return report


def _which_checkpoint(checkpoint, meta: dict) -> dict[str, Any]:
    """The report keys naming the step read: `checkpoint_dir`, `step`, `ema` (the decay) when
    its model is a moving average of the weights, and `newer` when the workdir holds a later
    checkpoint than the (best) one evaluated."""
    step_dir = Path(meta["loaded_from"])
    out: dict[str, Any] = {"checkpoint_dir": str(step_dir), "step": int(step_dir.name)}
    if meta["config"].get("ema"):
        out["ema"] = meta["config"]["ema"]
    latest = Path(checkpoint) / "checkpoints"
    steps = [int(p.name) for p in latest.iterdir() if p.name.isdigit()] if latest.is_dir() else []
    if steps and max(steps) > out["step"]:
        out["newer"] = str(latest / str(max(steps)))
    return out


def _within_charset(images, labels, allowed, charset: str):
    """The images and labels whose label is in `allowed`, and the report keys saying so."""
    keep = np.isin(np.asarray(labels), allowed)
    if not keep.any():
        raise CharjaxError(f"no image in this data has a label in --charset {charset!r}")
    return (
        images[keep],
        np.asarray(labels)[keep],
        {"charset": charset, "excluded": int((~keep).sum())},
    )


def describe(report: dict) -> str:
    """`evaluate_checkpoint`'s report as the lines `charjax eval` prints."""
    average = f", the weights' moving average, --ema {report['ema']}" if "ema" in report else ""
    lines = [f"checkpoint {report['checkpoint_dir']} (step {report['step']}{average})"]
    if "newer" in report:
        lines[0] += f"; the later {report['newer']} is not evaluated: pass it as --checkpoint"
    lines.append(f"{report['data']}: {report['n']} images")
    for reason, names in report.get("skipped", {}).items():
        more = f", ... (+{len(names) - 5})" if len(names) > 5 else ""
        lines.append(f"  not scored, {reason}: {len(names)} ({', '.join(names[:5])}{more})")
    if "charset" in report:
        lines[1] += (
            f" with a label in --charset {report['charset']} ({report['excluded']} others left "
            "out), answers restricted to it"
        )
    if "mse" in report:  # an autoencoder, VAE or CVAE: reconstruction, not accuracy
        lines.append(f"  loss (recon + beta KL)  {report['loss']:.4f}")
        lines.append(f"  reconstruction (BCE)    {report['recon']:.4f}  per image")
        if "kl" in report:
            lines.append(f"  KL                      {report['kl']:.4f}  per image")
        lines.append(f"  mean squared error      {report['mse']:.5f}  per pixel, 0..1 scale")
        return "\n".join(lines)
    worst = sorted(report["per_class"].items(), key=lambda kv: kv[1])[:8]
    lines += [
        f"  top-1                   {report['top1']:.4f}",
        f"  top-1 case-insensitive  {report['top1_case_insensitive']:.4f}",
        f"  top-5                   {report['top5']:.4f}",
        "  hardest classes: " + ", ".join(f"{c} {a:.2f}" for c, a in worst),
    ]
    if "report" in report:
        lines.append(f"  report                  {report['report']}")
    return "\n".join(lines)
