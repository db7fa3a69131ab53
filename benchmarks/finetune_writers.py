"""Fine-tuning the bundled model to a new writer (issue 15): accuracy before and after, what
is forgotten, and how long it takes.

Simulated writers are synthetic handwriting writers (`charjax.data.handwriting`) of a seed
the bundled model never saw (it trained on seed 2's writers; this uses seed 1000 by default).
Each writer draws every character `k + --eval-samples` times; the first k samples per class
are written as class folders of PNG scans, the user's way in, and fine-tuned on with the
real command, in a fresh process each time (start-up, data preparation and compilation
included in the wall time):

    charjax train --init-from pretrained --data folder:SAMPLES:0.5+FONTS:0.5 --workdir W

FONTS is a prepared font dataset (`charjax data fonts --out FONTS`); its train split is the
replay, its test split (font families the bundled model never saw) measures forgetting. The
writer's other samples measure what was learned. Accuracy is case-insensitive top-1 (c/C,
o/O, ... are one picture once cropped to the ink) unless a column says otherwise.

    .venv/bin/python benchmarks/finetune_writers.py --fonts /tmp/fonts1 --json out.json
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from charjax.data.cache import load_cache
from charjax.data.handwriting import render_char, sample_writer, writer_rng
from charjax.evaluate import accuracy_report
from charjax.labels import CLASSES, sample_dir_name
from charjax.predict import Predictor, default_checkpoint

ROOT = Path(__file__).resolve().parent.parent
CHARJAX = [sys.executable, "-m", "charjax.cli.main"]


def writer_scans(seed: int, writer: int, samples: int) -> list[list[np.ndarray]]:
    """scans[c][i]: the writer's i-th drawing of class c, uint8 dark ink on paper."""
    rng = writer_rng(seed, writer)
    hand = sample_writer(rng)
    return [[render_char(c, hand, rng) for _ in range(samples)] for c in CLASSES]


def write_folder(scans, k: int, out: Path) -> Path:
    """The first k scans of every class as class folders of PNGs (`folder:` reads them)."""
    for c, drawings in zip(CLASSES, scans, strict=True):
        (out / sample_dir_name(CLASSES.index(c))).mkdir(parents=True)
        for i, scan in enumerate(drawings[:k]):
            Image.fromarray(scan).save(out / sample_dir_name(CLASSES.index(c)) / f"{i}.png")
    return out


def score(predictor: Predictor, images: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    report = accuracy_report(predictor.probabilities(images), labels)
    return {"acc_ci": report["top1_case_insensitive"], "top1": report["top1"]}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def finetune(samples: Path, fonts: Path, workdir: Path, data_dir: Path, extra) -> dict:
    """Runs the fine-tuning command; returns its wall and CPU seconds, and the loop's."""
    cmd = CHARJAX + ["train", "--init-from", "pretrained", "--workdir", str(workdir)]
    cmd += ["--data", f"folder:{samples}:0.5+{fonts}:0.5", "--data-dir", str(data_dir)]
    cmd += ["--no-progress", *extra]
    t0, cpu0 = time.perf_counter(), _children_cpu()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    if done.returncode:
        raise SystemExit(f"fine-tuning failed:\n{done.stderr}")
    # The loop's own seconds (first step's compilation included, start-up and data not).
    return {"seconds": wall, "cpu_seconds": cpu, "loop_seconds": json.loads(done.stdout)["seconds"]}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fonts", required=True, type=Path, help="a prepared font dataset")
    parser.add_argument("--writers", type=int, default=5)
    parser.add_argument("--first-writer", type=int, default=0, help="to split a run in parts")
    parser.add_argument("--seed", type=int, default=1000, help="writers' seed (not 2)")
    parser.add_argument("--ks", default="1,3,5", help="samples per class to fine-tune on")
    parser.add_argument("--eval-samples", type=int, default=5, help="per class, per writer")
    parser.add_argument("--json", type=Path)
    parser.add_argument("extra", nargs="*", help="more `charjax train` options, after --")
    args = parser.parse_args(argv)
    ks = [int(k) for k in args.ks.split(",")]

    bundled = Predictor.load(default_checkpoint())
    fonts = load_cache(args.fonts)
    test = fonts.indices("test")
    font_images, font_labels = np.asarray(fonts.images[test]), np.asarray(fonts.labels[test])
    fonts_before = score(bundled, font_images, font_labels)
    print(f"held-out fonts ({len(test)} images): {fonts_before}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="finetune-writers-") as tmp:
        tmp = Path(tmp)
        for w in range(args.first_writer, args.first_writer + args.writers):
            scans = writer_scans(args.seed, w, max(ks) + args.eval_samples)
            held = [s for drawings in scans for s in drawings[max(ks) :]]
            images = bundled.preprocess(held)
            labels = np.repeat(np.arange(len(CLASSES)), args.eval_samples)
            before = score(bundled, images, labels)
            for k in ks:
                name = f"w{w}-k{k}"
                samples = write_folder(scans, k, tmp / name / "samples")
                times = finetune(samples, args.fonts, tmp / name / "run", tmp / "cache", args.extra)
                tuned = Predictor.load(tmp / name / "run")
                row = {"writer": w, "k": k, **times, "writer_before": before}
                row |= {"writer_after": score(tuned, images, labels)}
                row |= {"fonts_after": score(tuned, font_images, font_labels)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    table = summarize(rows, fonts_before, ks)
    print(table)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "fonts_before": fonts_before}, indent=1))


def summarize(rows, fonts_before, ks) -> str:
    """The README table: means over writers per k."""
    lines = [
        "| k per class | writer before | writer after | held-out fonts before -> after "
        "| fine-tune wall s (median, max) | its CPU s (median) |",
        "|---|---|---|---|---|---|",
    ]
    for k in ks:
        rs = [r for r in rows if r["k"] == k]
        mean = lambda key, rs=rs: 100 * np.mean([r[key]["acc_ci"] for r in rs])
        secs = [r["seconds"] for r in rs]
        lines.append(
            f"| {k} | {mean('writer_before'):.1f}% | {mean('writer_after'):.1f}% | "
            f"{100 * fonts_before['acc_ci']:.1f}% -> {mean('fonts_after'):.1f}% | "
            f"{np.median(secs):.0f}, {max(secs):.0f} | "
            f"{np.median([r['cpu_seconds'] for r in rs]):.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
