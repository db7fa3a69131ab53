"""The bundled default model: export a trained run into the package, and measure it.

    make pretrained          # builds the data, trains, then runs (from the repository root):
    python -m tools.bundle --run RUN --fonts FONT_CACHE --drawn DRAWN_FOLDER

`export_run` copies the best checkpoint's model and meta items (no optimizer state, so the
package stays small) into `charjax/pretrained/<step>/`, where `charjax.predict.load()` finds
it. `measure` computes the numbers of MODEL_CARD.md's table: held-out font families (plain and
stroke-style renderings), the drawn-glyph set (`tools.drawn_set`), held-out synthetic
writers (`charjax data handwriting`, with their digits also restricted to the 10 digits),
hollow outline fonts that no run trains on (`make outline-fonts`) and batch-1 latency.
`--checkpoint RUN` measures a candidate run without exporting it.
"""

import argparse
import shutil
import time
from pathlib import Path

import numpy as np

from charjax.atomic import atomic_path, write_json_atomic
from charjax.checkpoint import find_checkpoint
from charjax.data.cache import SPLITS, load_cache
from charjax.data.folder import read_folder
from charjax.evaluate import accuracy_report
from charjax.labels import (
    CLASSES,
    FOLD_TABLE,
    SAME_SHAPE_LETTERS,
    case_partners,
    parse_charset,
    restrict,
)
from charjax.predict import PRETRAINED_DIR, Predictor
from charjax.preprocess import load_image
from charjax.viz.report import confused_pairs

# Items a predictor reads (see charjax.checkpoint); "train" holds the optimizer state.
_INFERENCE_ITEMS = ("model", "meta", "_CHECKPOINT_METADATA")


def export_run(run, out=PRETRAINED_DIR) -> Path:
    """Copies the best (else latest) checkpoint of `run` into `out/<step>/`, replacing `out`.

    Returns:
      the step directory written.
    """
    directory, step = find_checkpoint(run)
    out = Path(out)
    target = out / str(step)
    # The new step goes into place whole before the old ones go, so a failed export leaves
    # the previous bundled model loadable.
    with atomic_path(target) as tmp:
        tmp.mkdir()
        for item in _INFERENCE_ITEMS:
            source = directory / str(step) / item
            if source.is_dir():
                shutil.copytree(source, tmp / item)
            elif source.exists():
                shutil.copy2(source, tmp / item)
    for old in out.glob("*"):
        if old.name.isdigit() and old.name != target.name:
            shutil.rmtree(old)
    return target


def folder_size(path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def shape_confusions(confusion: np.ndarray, top: int = 8) -> list[tuple[str, str, int]]:
    """`confused_pairs` (the eval report's most frequent mistakes) without the case-only ones,
    which `case_only_errors` counts apart: (true, predicted, count), most frequent first."""
    c = np.array(confusion)
    c[FOLD_TABLE[:, None] == FOLD_TABLE[None, :]] = 0  # the diagonal and the case pairs
    return [(t, p, n) for t, p, n, _share in confused_pairs(c, k=top)]


def case_only_errors(confusion: np.ndarray) -> dict[str, float]:
    """Shares of all examples whose only mistake is the case: in total, and for the letters
    whose cases are one shape when cropped (`SAME_SHAPE_LETTERS`)."""
    c = np.array(confusion)
    np.fill_diagonal(c, 0)
    case_only = np.where(FOLD_TABLE[:, None] == FOLD_TABLE[None, :], c, 0)
    same = np.flatnonzero(case_partners() != np.arange(len(CLASSES)))  # both cases of each
    n = max(int(np.sum(confusion)), 1)
    return {"all": case_only.sum() / n, SAME_SHAPE_LETTERS: case_only[same].sum() / n}


def _summary(probs: np.ndarray, labels: np.ndarray) -> dict:
    r = accuracy_report(probs, labels)
    return {
        "n": r["n"],
        "top1": r["top1"],
        "top1_case_insensitive": r["top1_case_insensitive"],
        "case_only_errors": case_only_errors(np.asarray(r["confusion"])),
        "confused": shape_confusions(np.asarray(r["confusion"])),
    }


def font_test_sets(predictor: Predictor, fonts) -> dict[str, dict]:
    """Accuracy on the test split (held-out families) of a font cache, by rendering style.

    The cache's examples are ordered face, character, then `variants` plain renderings and
    `stroke_variants` stroke-style ones (see `charjax.data.fonts`), so the position within
    a glyph tells the style.
    """
    cache = load_cache(fonts)
    plain = int(cache.meta["variants"])
    per_char = plain + int(cache.meta.get("stroke_variants", 0))
    test = cache.indices("test")
    position = test % per_char
    probs = predictor.probabilities(np.asarray(cache.images[test]))
    labels = np.asarray(cache.labels[test])
    out = {"held-out fonts, plain": _summary(probs[position < plain], labels[position < plain])}
    if per_char > plain:
        stroke = position >= plain
        out["held-out fonts, stroke style"] = _summary(probs[stroke], labels[stroke])
    out["held-out fonts, plain"]["families"] = len(cache.meta["families"][SPLITS[2]])
    return out


def drawn_sets(predictor: Predictor, drawn) -> dict[str, dict]:
    """Accuracy on the drawn-glyph folder: all of it, per Hershey face and per pen width."""
    items = read_folder(Path(drawn))
    images = predictor.preprocess([load_image(path) for path, _ in items])
    labels = np.asarray([label for _, label in items])
    probs = predictor.probabilities(images)
    names = [Path(path).stem for path, _ in items]  # "<face>-w<width>-<k>"
    out = {"drawn glyphs": _summary(probs, labels)}
    for key in sorted({n.split("-")[0] for n in names} | {n.split("-")[1] for n in names}):
        sel = np.asarray([key in n.split("-")[:2] for n in names])
        out[f"drawn glyphs, {key}"] = _summary(probs[sel], labels[sel])
    return out


def writer_sets(predictor: Predictor, writers) -> dict[str, dict]:
    """Accuracy on the test split (held-out writers) of a `charjax data handwriting` cache:
    all 62 classes, and its digits with the answer restricted to the 10 digits."""
    cache = load_cache(writers)
    test = cache.indices("test")
    probs = predictor.probabilities(np.asarray(cache.images[test]))
    labels = np.asarray(cache.labels[test])
    digits = labels < 10
    restricted = restrict(probs[digits], parse_charset("digits")).argmax(axis=1)
    return {
        "held-out writers": _summary(probs, labels),
        "held-out writers, digits": {
            **_summary(probs[digits], labels[digits]),
            "top1_restricted_to_digits": float((restricted == labels[digits]).mean()),
        },
    }


def outline_set(predictor: Predictor, outline) -> dict[str, dict]:
    """Accuracy on every image of a font cache of outline faces (`make outline-fonts`): hollow
    letters, as outline fonts and bubble letters draw them, from families no run trains on."""
    cache = load_cache(outline)
    every = cache.indices("all")
    probs = predictor.probabilities(np.asarray(cache.images[every]))
    return {"outline fonts": _summary(probs, np.asarray(cache.labels[every]))}


def latency_ms(predictor: Predictor, repeats: int = 300) -> dict[str, float]:
    """Median batch-1 times in ms: the jitted forward pass, and preprocess + forward."""
    image = np.zeros((400, 400), np.uint8)
    image[100:300, 190:210] = 255  # a drawn "l" on a GUI-sized canvas
    predictor.warmup((1,))  # compile first, so we are not measuring compilation
    forward, full = [], []
    x = predictor.preprocess(image)
    for _ in range(repeats):
        t = time.perf_counter()
        predictor.probabilities(x)
        forward.append(time.perf_counter() - t)
        t = time.perf_counter()
        predictor.predict(image, top_k=5)
        full.append(time.perf_counter() - t)
    return {
        "forward_ms": 1e3 * float(np.median(forward)),
        "preprocess_and_forward_ms": 1e3 * float(np.median(full)),
    }


def measure(checkpoint, fonts=None, drawn=None, writers=None, outline=None) -> dict:
    """The model card's numbers for `checkpoint` (see the module docstring)."""
    predictor = Predictor.load(checkpoint)
    out = {"checkpoint": str(checkpoint), "size_bytes": folder_size(find_checkpoint(checkpoint)[0])}
    if fonts:
        out.update(font_test_sets(predictor, fonts))
    if drawn:
        out.update(drawn_sets(predictor, drawn))
    if writers:
        out.update(writer_sets(predictor, writers))
    if outline:
        out.update(outline_set(predictor, outline))
    out["latency"] = latency_ms(predictor)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Export a run as the bundled model; measure it.")
    parser.add_argument("--run", help="a workdir to export into charjax/pretrained first")
    parser.add_argument("--fonts", help="the font cache the run trained on (its test split)")
    parser.add_argument("--drawn", help="the drawn-glyph folder (tools.drawn_set)")
    parser.add_argument("--writers", help="a synthetic handwriting cache (its test split)")
    parser.add_argument("--outline", help="a font cache of outline faces (make outline-fonts)")
    parser.add_argument("--json", help="also write the numbers to this JSON file")
    parser.add_argument(
        "--checkpoint", help="measure this run or checkpoint instead of the bundled model"
    )
    args = parser.parse_args(argv)
    if args.run:
        print(f"exported {args.run} to {export_run(args.run)}")
    numbers = measure(
        args.checkpoint or PRETRAINED_DIR, args.fonts, args.drawn, args.writers, args.outline
    )
    for name, r in numbers.items():
        if isinstance(r, dict) and "top1" in r:
            pairs = ", ".join(f"{t}->{p} {n}" for t, p, n in r["confused"][:5])
            case, same = r["case_only_errors"], SAME_SHAPE_LETTERS
            print(
                f"{name:34s} n={r['n']:6d}  top1 {r['top1']:.4f}  "
                f"case-insensitive {r['top1_case_insensitive']:.4f}  case-only errors "
                f"{case['all']:.4f} ({same}: {case[same]:.4f})  ({pairs})"
            )
    if "held-out writers, digits" in numbers:
        restricted = numbers["held-out writers, digits"]["top1_restricted_to_digits"]
        print(f"held-out writers' digits, restricted to the 10 digits: top1 {restricted:.4f}")
    print(f"size {numbers['size_bytes'] / 1e6:.2f} MB, latency {numbers['latency']}")
    if args.json:
        write_json_atomic(args.json, numbers)


if __name__ == "__main__":
    main()
