"""The font source: every usable font face on the machine, rendered into a dataset cache.

    charjax data fonts --out data/fonts          # or, from Python:
    build_font_dataset(Path("data/fonts"), size=32)

The flow: find font files (system folders, `--fonts` paths, $CHARJAX_FONTS) -> open every face
(collections hold several) -> keep the faces usable for 62-class recognition and drop
duplicated outlines (`font_filter`) -> split faces into train/val/test by family, so test
fonts come from families never seen in training -> draw 62 characters x K variants per face
through the one preprocessing function (`font_render`) -> `cache.write_cache`.
"""

import collections
import concurrent.futures
import dataclasses
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from charjax.data import font_filter, font_render
from charjax.data.cache import SPLITS, write_cache
from charjax.data.font_split import SplitPlan, split_faces
from charjax.errors import CharjaxError, check_range
from charjax.labels import CLASSES
from charjax.preprocess import PreprocessSpec

# Family names (or their starts) of handwriting-style and script faces in Debian's font
# packages fonts-comic-neue, -humor-sans, -dkg-handwriting, -bwht, -dancingscript,
# -lobstertwo, -tlwg-purisa-ttf, -sjfonts, -breip, and the cursive and script ones
# -ecolier-court, -femkeklaver, -havana, -isabella, -kaushanscript, -klee, -kristi,
# -leckerli-one, -rufscript: `--handwriting` selects these.
HANDWRITING_FAMILIES = (
    "Comic Neue", "Humor Sans", "DkgHandwriting", "Because We", "Dancing Script",
    "Lobster Two", "Purisa", "Delphine", "Steve", "Breip",
    "Ecolier", "femkeklaver", "Havana", "Isabella", "Kaushan Script", "Klee One", "Kristi",
    "Leckerli One", "Rufscript",
)  # fmt: skip

FONT_SUFFIXES = (".ttf", ".otf", ".ttc", ".otc", ".pfb", ".t1", ".woff", ".woff2")
ENV_VAR = "CHARJAX_FONTS"


@dataclass(frozen=True)
class FontOptions:
    """How to build the font dataset; all defaults live here.

    Attributes:
      size: image side in pixels (the PreprocessSpec size; other spec fields keep defaults).
      font_paths: extra font files or folders (searched recursively).
      system_fonts: also search the usual font folders of Linux, macOS and Windows.
      variants: renderings per glyph; variant 0 is plain, the others vary size, stroke
        weight and position slightly.
      stroke_variants: extra renderings per glyph in stroke style: the glyph thinned to its
        skeleton and redrawn with a round pen of random width, jittered, like a mouse drawing
        (see `charjax.data.strokes`). They follow the plain variants of each glyph.
      families: keep only faces whose family name starts with one of these (case-insensitive);
        empty keeps all. `HANDWRITING_FAMILIES` selects the handwriting-style faces.
      seed: seeds the variants (splits depend only on font names, not on the seed).
      workers: processes for checking and drawing; 0 picks one per CPU for large font sets.
    """

    size: int = 32
    font_paths: tuple[str, ...] = ()
    system_fonts: bool = True
    variants: int = 4
    stroke_variants: int = 0
    families: tuple[str, ...] = ()
    seed: int = 0
    workers: int = 0

    def __post_init__(self):
        PreprocessSpec(size=self.size)  # validates the size with the usual message
        check_range("variants", self.variants, 1, 64)
        check_range("stroke variants", self.stroke_variants, 0, 64)
        check_range("workers", self.workers, 0)


@dataclass
class FontReport:
    """What happened to the fonts: found, accepted, rejected (by reason), how split."""

    files: int = 0
    faces: int = 0
    accepted: list[str] = field(default_factory=list)
    rejected: dict[str, list[str]] = field(default_factory=dict)
    split: SplitPlan | None = None
    num_examples: int = 0
    seconds: float = 0.0

    def reject(self, reason: str, name: str) -> None:
        self.rejected.setdefault(reason, []).append(name)

    def to_dict(self) -> dict:
        return {
            "files": self.files,
            "faces_found": self.faces,
            "faces_accepted": len(self.accepted),
            "rejected": {reason: names for reason, names in sorted(self.rejected.items())},
        }

    def summary(self, first: int = 3) -> str:
        """A few lines for people: counts, reasons with the first names, the split."""
        n_rej = sum(len(v) for v in self.rejected.values())
        lines = [
            f"fonts: {self.files} files, {self.faces} faces found, "
            f"{len(self.accepted)} accepted, {n_rej} rejected"
        ]
        for reason, names in sorted(self.rejected.items(), key=lambda kv: -len(kv[1])):
            more = f", ... (+{len(names) - first})" if len(names) > first else ""
            lines.append(f"  rejected, {reason}: {len(names)} ({', '.join(names[:first])}{more})")
        if self.split is not None:
            lines.extend(self.split.describe())
        return "\n".join(lines)


def system_font_dirs() -> list[Path]:
    """The usual font folders of Linux, macOS and Windows that exist here."""
    home = Path.home()
    candidates = [
        Path("/usr/share/fonts"),
        Path("/usr/local/share/fonts"),
        home / ".fonts",
        home / ".local/share/fonts",
        Path("/System/Library/Fonts"),
        Path("/Library/Fonts"),
        home / "Library/Fonts",
    ]
    if os.environ.get("WINDIR"):
        candidates.append(Path(os.environ["WINDIR"]) / "Fonts")
    if os.environ.get("LOCALAPPDATA"):
        candidates.append(Path(os.environ["LOCALAPPDATA"]) / "Microsoft/Windows/Fonts")
    return [d for d in candidates if d.is_dir()]


def _is_font(path: Path) -> bool:
    return path.suffix.lower() in FONT_SUFFIXES and not path.name.startswith(".")


def _walk(root: Path) -> Iterable[Path]:
    # followlinks: distributions link font folders into /usr/share/fonts; the caller drops
    # the duplicates this creates by resolved path.
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            yield Path(dirpath) / name


def find_font_files(extra_paths: Sequence[str | os.PathLike] = (), *, system: bool = True):
    """Font files from the system folders, $CHARJAX_FONTS and `extra_paths`.

    Args:
      extra_paths: font files or folders (searched recursively); each must exist.
      system: include the usual font folders of Linux, macOS and Windows.

    Returns:
      list[Path], sorted, each file once (symlinks resolved).
    """
    env = [p for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p]
    roots = [(Path(p), f"${ENV_VAR} entry") for p in env]
    roots += [(Path(p), "font path") for p in extra_paths]
    for root, what in roots:
        if not root.exists():
            raise CharjaxError(f"{what} {root} does not exist")
        if root.is_file() and not _is_font(root):
            raise CharjaxError(
                f"{what} {root} is not a font file (expected {', '.join(FONT_SUFFIXES)})"
            )
    if system:
        roots += [(d, "system") for d in system_font_dirs()]
    found: dict[Path, Path] = {}
    for root, _ in roots:
        files = [root] if root.is_file() else (p for p in _walk(root) if _is_font(p))
        for path in files:
            found.setdefault(path.resolve(), path)
    return sorted(found.values())


@dataclass(frozen=True)
class FontFace:
    """One face of a font file and the verdict of the checks."""

    path: str
    index: int
    family: str
    style: str
    check: font_filter.FaceCheck

    @property
    def name(self) -> str:
        return f"{self.family} {self.style}".strip()


def _check_file(path: str) -> list[FontFace] | str:
    """Opens every face of a font file and checks it; an error message if none opens."""
    faces = []
    # Collections (.ttc/.otc) hold several faces; FreeType refuses the first index past the end.
    while True:
        try:
            font = font_render.load_face(path, len(faces))
        except (OSError, ValueError) as e:
            return faces or f"{Path(path).name} ({e})"
        family, style = font.getname()
        try:
            check = font_filter.check_face(font_render.check_renderer(font))
        except (OSError, ValueError) as e:  # FreeType can fail on one broken glyph
            check = font_filter.FaceCheck(font_filter.UNREADABLE, str(e))
        faces.append(FontFace(path, len(faces), family or Path(path).stem, style or "", check))


def _parallel_map(fn: Callable, items: list, workers: int, progress: bool, desc: str) -> list:
    """`[fn(x) for x in items]` with a progress bar, in worker processes when worthwhile."""
    if workers == 0:
        # Spawning costs ~1 s per worker; only big font sets (a full apt font install has
        # ~900 faces) repay it.
        workers = min(os.cpu_count() or 1, 8) if len(items) > 100 else 1
    bar = tqdm(total=len(items), desc=desc, unit="font", disable=not progress, file=sys.stderr)
    with bar:
        if workers == 1:
            results = []
            for item in items:
                results.append(fn(item))
                bar.update()
            return results
        # "spawn": forking a process that has imported JAX (the trainer) can deadlock.
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            results = []
            for result in pool.map(fn, items, chunksize=4):
                results.append(result)
                bar.update()
            return results


def select_faces(
    files: Sequence[Path], *, workers: int = 0, progress: bool = False
) -> tuple[list[FontFace], FontReport]:
    """Opens and checks every face of `files`; keeps the usable ones, each design once.

    Args:
      files: font files (see `find_font_files`).
      workers: processes to use; 0 picks one per CPU for large font sets.
      progress: show a progress bar on stderr.

    Returns:
      (accepted faces in file order, FontReport with the counts and rejection reasons).
    """
    report = FontReport(files=len(files))
    checked = _parallel_map(
        _check_file, [str(f) for f in files], workers, progress, "checking fonts"
    )
    usable: list[FontFace] = []
    for faces in checked:
        if isinstance(faces, str):
            report.faces += 1
            report.reject(font_filter.UNREADABLE, faces)
            continue
        report.faces += len(faces)
        for face in faces:
            if face.check.reason is None:
                usable.append(face)
            else:
                report.reject(face.check.reason, face.name)

    # Of two faces with the same outlines keep the one from the larger family: that is where
    # the design lives (DejaVu Serif Book, not the Latin letters inside DejaVu Math TeX Gyre).
    family_size = collections.Counter(f.family for f in usable)
    order = sorted(range(len(usable)), key=lambda i: (-family_size[usable[i].family], i))
    outlines, kept_order, keep = font_filter.OutlineIndex(), [], set()
    for i in order:
        dup = outlines.find(usable[i].check.signature)
        if dup is not None:
            face, same = usable[i], kept_order[dup]
            # The same face in two formats (.otf and .t1) is told apart by its file name.
            other = same.name if same.name != face.name else Path(same.path).name
            report.reject(font_filter.DUPLICATE, f"{face.name} (= {other})")
            continue
        outlines.add(usable[i].check.signature)
        kept_order.append(usable[i])
        keep.add(i)

    kept, names = [], set()
    for i, face in enumerate(usable):
        if i not in keep:
            continue
        if face.name in names:  # two files claim one name: tell them apart
            face = dataclasses.replace(face, style=f"{face.style} [{Path(face.path).name}]")
        names.add(face.name)
        kept.append(face)
    report.accepted = [f.name for f in kept]
    return kept, report


def _of_families(faces: list[FontFace], families, report: FontReport) -> list[FontFace]:
    """The faces whose family starts with one of `families`; the others are reported."""
    prefixes = tuple(f.lower() for f in families)
    kept = [f for f in faces if f.family.lower().startswith(prefixes)]
    for face in faces:
        if not face.family.lower().startswith(prefixes):
            report.reject("not a selected family", face.name)
    report.accepted = [f.name for f in kept]
    if not kept:
        raise CharjaxError(
            f"none of the {len(faces)} usable faces belongs to the families "
            f"{', '.join(families)}; is the font package installed?"
        )
    return kept


def build_font_dataset(
    out: str | os.PathLike, options: FontOptions | None = None, *, progress: bool = True, **kw
) -> tuple[Path, FontReport]:
    """Builds the font dataset cache at `out`.

    Args:
      out: the cache directory to write (replaced atomically if it exists).
      options: a FontOptions; keyword arguments override its fields, so
        `build_font_dataset(out, size=32, variants=1)` works too.
      progress: show progress bars on stderr.

    Returns:
      (path of the cache, FontReport). Raises CharjaxError when no font is found or usable.
    """
    opts = dataclasses.replace(options or FontOptions(), **kw)
    start = time.perf_counter()
    spec = PreprocessSpec(size=opts.size)
    files = find_font_files(opts.font_paths, system=opts.system_fonts)
    if not files:
        raise CharjaxError(
            "no font files found; install some (e.g. `apt install fonts-dejavu-core`), "
            f"or pass --fonts PATH or set {ENV_VAR}"
        )
    faces, report = select_faces(files, workers=opts.workers, progress=progress)
    if opts.families:
        faces = _of_families(faces, opts.families, report)
    if not faces:
        reasons = ", ".join(f"{r}: {len(n)}" for r, n in sorted(report.rejected.items()))
        raise CharjaxError(
            f"none of the {report.faces} font faces found is usable for 62-class "
            f"recognition ({reasons})"
        )
    plan = split_faces([f.family for f in faces], report.accepted, seed=opts.seed)
    report.split = plan

    jobs = [
        font_render.RenderJob(
            f.path, f.index, f.name, spec.to_dict(), opts.variants, opts.seed, opts.stroke_variants
        )
        for f in faces
    ]
    rendered = _parallel_map(
        font_render.render_face, jobs, opts.workers, progress, "drawing glyphs"
    )
    per_char = opts.variants + opts.stroke_variants
    per_face = len(CLASSES) * per_char
    images = np.concatenate(rendered)
    labels = np.tile(np.repeat(np.arange(len(CLASSES)), per_char), len(faces))
    groups = np.repeat(np.arange(len(faces)), per_face)
    splits = plan.example_splits(groups, labels)
    report.num_examples = len(labels)

    meta = {
        "source": "fonts",
        "preprocess": spec.to_dict(),
        "group_names": report.accepted,
        "group_files": [f"{f.path}#{f.index}" if f.index else f.path for f in faces],
        "split_by": plan.by,
        "split_note": plan.note,
        "families": {s: plan.families_in(s) for s in SPLITS},
        "filter": report.to_dict(),
        "variants": opts.variants,
        "stroke_variants": opts.stroke_variants,
        "families_selected": list(opts.families),
        "seed": opts.seed,
    }
    path = write_cache(out, images, labels, groups, splits, meta)
    report.seconds = time.perf_counter() - start
    return path, report
