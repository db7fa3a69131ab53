"""Reading lines: charjax against Tesseract and EasyOCR on the same generated lines.

    .venv/bin/python benchmarks/read_lines.py --lines 60            # all kinds, the table
    .venv/bin/python benchmarks/read_lines.py --kinds print --save-dir /tmp/lines
    .venv/bin/python benchmarks/read_lines.py --from /data/other-lines  # a set kept elsewhere

The lines come from `charjax.data.lines` (seeded): printed lines of the test-split font
families, hand-print and joined lines of the handwriting synthesis's held-out writers, and
lines of cursive script fonts. Every engine reads the same images. For each kind and engine it
prints the character error rate (CER: edits / characters of the truth), the same ignoring case,
whole lines right, case in context (of the letters whose cases share a shape, c/C o/O s/S v/V
w/W x/X z/Z, read as the right letter: the share in the right case) and time per line.
charjax reads in process after a warm-up (so compilation is not timed), with both engines:
"glyphs" (cut into glyphs, the classifier, context) and "lines" (the CTC line model, when one
is bundled or `--lines-model` names one); Tesseract 5 runs as
`tesseract IMAGE stdout --psm 7` (one line); EasyOCR, when `--easyocr-python` names an
interpreter that has it (with offline English weights), reads in one process after a warm-up.
Outputs are compared on 0-9, A-Z, a-z and single spaces, the only characters in the truth.
"""

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from charjax.atomic import write_json_atomic
from charjax.data.lines import KINDS, align, char_errors, make_line_set
from charjax.line_model import BUNDLED
from charjax.read import make_reader
from charjax.viz.grid import save_png

SAME_SHAPE = set("cosvwxzCOSVWXZ")
_EASYOCR = """
import json, sys, time
import os
import easyocr
import easyocr_en_models  # the offline weights package: nothing is downloaded
models = os.path.join(os.path.dirname(easyocr_en_models.__file__), "models")
reader = easyocr.Reader(["en"], gpu=False, verbose=False, model_storage_directory=models,
                        download_enabled=False)
paths = json.loads(sys.stdin.read())
reader.readtext(paths[0])  # warm-up
out = []
for p in paths:
    t = time.perf_counter()
    words = reader.readtext(p, detail=1, paragraph=False)
    words.sort(key=lambda w: min(x for x, _ in w[0]))
    out.append([" ".join(w[1] for w in words), time.perf_counter() - t])
print(json.dumps(out))
"""


def normalise(text: str) -> str:
    """Only the characters the truth can hold, single spaces, no ends."""
    return " ".join(re.sub(r"[^0-9A-Za-z]+", " ", text).split())


def read_charjax(paths, checkpoint, engine: str, lines_model) -> list[tuple[str, float]]:
    reader = make_reader(checkpoint, engine=engine, lines_model=lines_model)
    if reader.lines is not None:
        reader.lines.warmup()
    reader.read(paths[0])  # warm-up: compile the classifier's batch sizes
    out = []
    for p in paths:
        t = time.perf_counter()
        text = reader.read(p).text
        out.append((text, time.perf_counter() - t))
    return out


def read_tesseract(paths) -> list[tuple[str, float]]:
    out = []
    for p in paths:
        t = time.perf_counter()
        run = subprocess.run(["tesseract", str(p), "stdout", "--psm", "7"], capture_output=True,
                             text=True, check=True)  # fmt: skip
        out.append((run.stdout, time.perf_counter() - t))
    return out


def read_easyocr(paths, python: str) -> list[tuple[str, float]] | None:
    run = subprocess.run([python, "-c", _EASYOCR], input=json.dumps([str(p) for p in paths]),
                         capture_output=True, text=True)  # fmt: skip
    if run.returncode:
        print(f"EasyOCR skipped: {run.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return [(text, seconds) for text, seconds in json.loads(run.stdout)]


def score(readings, truths) -> dict:
    """CER exact and ignoring case, whole lines right, case in context, ms per line."""
    got = [normalise(text) for text, _ in readings]
    pairs = list(zip(got, truths, strict=True))
    chars = sum(len(t) for t in truths)
    case_right = case_seen = 0
    for g, t in pairs:
        for a, b in align(g, t):
            if b in SAME_SHAPE and a is not None and a.lower() == b.lower():
                case_seen += 1
                case_right += a == b
    return {
        "cer": sum(char_errors(g, t) for g, t in pairs) / chars,
        "cer_nocase": sum(char_errors(g.lower(), t.lower()) for g, t in pairs) / chars,
        "lines_right": sum(g == t for g, t in pairs) / len(truths),
        "case_in_context": case_right / max(case_seen, 1),
        "ms_per_line": 1000 * float(np.mean([s for _, s in readings])),
    }


def generated_set(kind: str, n: int, seed: int, work: Path) -> tuple[list[Path], list[str]]:
    """Renders `n` lines of `kind` into `work` as PNGs plus `KIND.json` (image name, text,
    font or writer), the layout `--from` reads back."""
    samples = make_line_set(kind, n, seed=seed)
    paths = [save_png(Image.fromarray(s.image), work / f"{kind}-{i:03d}.png")
             for i, s in enumerate(samples)]  # fmt: skip
    manifest = [{"image": p.name, "text": s.text, "face": s.face}
                for p, s in zip(paths, samples, strict=True)]  # fmt: skip
    write_json_atomic(work / f"{kind}.json", manifest)
    return paths, [s.text for s in samples]


def stored_sets(folder: Path) -> dict[str, tuple[list[Path], list[str]]]:
    """Line sets kept elsewhere: every `KIND.json` in `folder`, a list of {"image", "text"}
    (as `--save-dir` writes). Truths are normalised like readings: charjax reads no
    punctuation, so a set with some is scored on its letters, digits and spaces."""
    sets = {}
    for manifest in sorted(folder.glob("*.json")):
        entries = json.loads(manifest.read_text())
        sets[manifest.stem] = ([folder / e["image"] for e in entries],
                               [normalise(e["text"]) for e in entries])  # fmt: skip
    if not sets:
        raise SystemExit(f"no KIND.json manifests in {folder}")
    return sets


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--lines", type=int, default=60, help="Lines per kind.")
    parser.add_argument("--seed", type=int, default=1000, help="Not the seed tuned on.")
    parser.add_argument("--from", dest="stored", default=None, help="A line set kept elsewhere.")
    parser.add_argument("--checkpoint", default=None, help="Default: the bundled model.")
    parser.add_argument("--lines-model", default=None, help="Default: the bundled line model.")
    parser.add_argument("--easyocr-python", default=None, help="An interpreter with easyocr.")
    parser.add_argument("--save-dir", default=None, help="Keep the images and truth here.")
    parser.add_argument("--json", default=None, help="Write the numbers here too.")
    args = parser.parse_args(argv)

    work = Path(args.save_dir or tempfile.mkdtemp(prefix="charjax-lines-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.stored:
        sets = stored_sets(Path(args.stored))
    else:
        sets = {k: generated_set(k, args.lines, args.seed, work) for k in args.kinds.split(",")}
    results = {}
    for kind, (paths, truths) in sets.items():
        engines = {"charjax glyphs": read_charjax(paths, args.checkpoint, "glyphs", None)}
        if args.lines_model or (BUNDLED / "meta.json").is_file():
            lines = read_charjax(paths, args.checkpoint, "lines", args.lines_model)
            engines["charjax lines"] = lines
        if shutil.which("tesseract"):
            engines["tesseract"] = read_tesseract(paths)
        if args.easyocr_python:
            easy = read_easyocr(paths, args.easyocr_python)
            if easy is not None:
                engines["easyocr"] = easy
        results[kind] = {name: score(r, truths) for name, r in engines.items()}
        print_table(kind, results[kind], len(paths))
    if args.json:
        write_json_atomic(args.json, results)
    if not args.save_dir:
        shutil.rmtree(work)


def print_table(kind: str, rows: dict, n: int) -> None:
    print(f"\n{kind} ({n} lines)")
    print("| engine | CER | CER ignoring case | lines right | case in context | ms/line |")
    print("|---|---|---|---|---|---|")
    for name, m in rows.items():
        print(f"| {name} | {m['cer']:.1%} | {m['cer_nocase']:.1%} | {m['lines_right']:.0%} | "
              f"{m['case_in_context']:.1%} | {m['ms_per_line']:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
