"""`charjax data`: prepare datasets (fonts, Chars74K, image folders) and look at them."""

import sys
import time
from pathlib import Path

import click

from charjax.data.cache import SPLITS, describe, is_cache, load_cache
from charjax.data.chars74k import (
    OFFICIAL_URL,
    SPLIT_MODES,
    URL_ENV,
    Chars74kOptions,
    prepare_chars74k,
)
from charjax.data.folder import FolderOptions, build_folder_dataset
from charjax.data.fonts import HANDWRITING_FAMILIES, FontOptions, build_font_dataset
from charjax.data.handwriting import HandwritingOptions, build_handwriting_dataset
from charjax.data.sources import default_chars74k_cache, download_dir
from charjax.errors import CharjaxError
from charjax.viz.contact_sheet import contact_sheet
from charjax.viz.grid import save_png

F, G = FontOptions(), FolderOptions()  # defaults shown in --help come from the options
C, H = Chars74kOptions(), HandwritingOptions()


def _check_out(out: str) -> Path:
    """Refuses to replace a folder that is not a dataset (writing replaces `out` whole)."""
    path = Path(out)
    if path.is_file():
        raise CharjaxError(f"--out {path} is a file; give a folder for the dataset")
    if path.is_dir() and any(path.iterdir()) and not is_cache(path):
        raise CharjaxError(
            f"--out {path} is a non-empty folder that is not a charjax dataset; "
            "refusing to replace it (choose a new folder)"
        )
    return path


@click.group()
def data():
    """Prepare datasets and look at them.

    \b
    Every source prepares into the same cache format (a folder of .npy arrays and meta.json)
    that `charjax train --data DIR` reads:
      charjax data fonts --out data/fonts             glyphs from this machine's fonts
      charjax data chars74k --subsets font,hand       the Chars74K dataset (downloaded)
      charjax data handwriting --out data/hand        synthetic handwriting
      charjax data folder my_chars/ --out data/mine   your own images
      charjax data info data/fonts --sheet fonts.png  counts and a contact sheet
    """


@data.command()
@click.option("--out", required=True, type=click.Path(), help="Dataset folder to write.")
@click.option("--size", default=F.size, show_default=True, type=int, help="Image side in pixels.")
@click.option(
    "--fonts",
    "font_paths",
    multiple=True,
    type=click.Path(),
    help="Extra font file or folder (repeatable); folders are searched recursively.",
)
@click.option(
    "--system-fonts/--no-system-fonts",
    default=F.system_fonts,
    show_default=True,
    help="Also use the fonts installed in the usual folders of Linux, macOS, Windows.",
)
@click.option(
    "--variants",
    default=F.variants,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Renderings per glyph: the plain one, then slight changes of size, stroke "
    "weight and position.",
)
@click.option(
    "--stroke-variants",
    default=F.stroke_variants,
    show_default=True,
    type=click.IntRange(0, 64),
    help="Extra renderings per glyph in stroke style: the glyph thinned to its skeleton and "
    "redrawn with a round pen of random width, jittered, like a drawing made with a mouse.",
)
@click.option(
    "--family",
    "families",
    multiple=True,
    help="Keep only faces whose family name starts with this (repeatable; case-insensitive).",
)
@click.option(
    "--handwriting",
    is_flag=True,
    help="Keep only handwriting-style and script faces (those of Debian's fonts-comic-neue, "
    "fonts-humor-sans, fonts-dkg-handwriting, fonts-bwht, fonts-dancingscript, "
    "fonts-lobstertwo, fonts-tlwg-purisa-ttf, fonts-sjfonts, fonts-breip, fonts-ecolier-court, "
    "fonts-femkeklaver, fonts-havana, fonts-isabella, fonts-kaushanscript, fonts-klee, "
    "fonts-kristi, fonts-leckerli-one, fonts-rufscript); adds to --family.",
)
@click.option(
    "--seed",
    default=F.seed,
    show_default=True,
    type=int,
    help="Seeds the variants (the split depends on font names only).",
)
@click.option(
    "--workers",
    default=F.workers,
    show_default=True,
    type=click.IntRange(0),
    help="Processes for checking and drawing (0: one per CPU for large font sets).",
)
@click.option(
    "--progress/--no-progress",
    default=True,
    show_default=True,
    help="Show progress bars on stderr.",
)
def fonts(out, progress, handwriting, **options):
    """Render 0-9, A-Z, a-z from the fonts on this machine into a dataset.

    \b
    Example:
      charjax data fonts --out data/fonts
      charjax data fonts --out data/fonts64 --size 64 --fonts ~/my_fonts --variants 8
      charjax data fonts --out data/hand --handwriting --stroke-variants 4

    Fonts come from the system font folders, --fonts and $CHARJAX_FONTS (paths separated by
    the OS path separator). .ttf, .otf, .ttc/.otc (every face), .pfb/.t1, .woff and .woff2
    are read. Kept are faces with real glyphs for all 62 characters; rejected are symbol
    fonts, caps-only or small-caps faces, and duplicates of an accepted face. Faces are split
    into train/val/test by family (about 80/10/10), so test fonts are unseen families; with
    fewer than 3 families the split is by face, and the summary says so. More fonts make a
    better model: on Debian/Ubuntu, `apt install fonts-noto-core fonts-liberation2
    fonts-urw-base35 fonts-freefont-ttf` and similar packages add hundreds of faces.
    """
    out_path = _check_out(out)
    families = tuple(options.pop("families")) + (HANDWRITING_FAMILIES if handwriting else ())
    opts = FontOptions(
        **{**options, "font_paths": tuple(options["font_paths"]), "families": families}
    )
    path, report = build_font_dataset(out_path, opts, progress=progress)
    click.echo(report.summary())
    click.echo(
        f"wrote {report.num_examples} images ({len(report.accepted)} faces x 62 "
        f"characters x {opts.variants + opts.stroke_variants} "
        f"variant{'s' if opts.variants + opts.stroke_variants > 1 else ''}) to {path} "
        f"in {report.seconds:.1f} s"
    )


@data.command()
@click.option("--out", required=True, type=click.Path(), help="Dataset folder to write.")
@click.option("--size", default=H.size, show_default=True, type=int, help="Image side in pixels.")
@click.option(
    "--writers",
    default=H.writers,
    show_default=True,
    type=click.IntRange(3, 100_000),
    help="Synthetic writers, each with their own slant, proportions, pen and letterforms.",
)
@click.option(
    "--samples",
    default=H.samples,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Renderings of each character per writer.",
)
@click.option(
    "--seed", default=H.seed, show_default=True, type=int, help="Seeds the writers and drawings."
)
@click.option(
    "--workers",
    default=H.workers,
    show_default=True,
    type=click.IntRange(0),
    help="Processes for drawing (0: one per CPU, up to 8, from 200 writers on).",
)
def handwriting(out, **options):
    """Draw 0-9, A-Z, a-z by synthetic writers into a dataset.

    \b
    Example:
      charjax data handwriting --out data/hand --writers 3000
      charjax train --data fonts+data/hand

    Each writer keeps one slant, width, ascender and descender length, pen and ink, and
    one preferred letterform per character (open or closed 4, barred 7 and Z, single- or
    double-storey a, looped l, ...), drawn with a wobbling hand: loops that do not close,
    strokes that overshoot or fall short at joins, lines wider where the pen slows down.
    The letterforms are charjax's own, not any font's or handwriting dataset's. Writers
    are split 80/10/10 into train/val/test, so val and test hands are unseen.
    """
    out_path = _check_out(out)
    start = time.perf_counter()
    path = build_handwriting_dataset(out_path, HandwritingOptions(**options))
    n = options["writers"] * 62 * options["samples"]
    click.echo(
        f"wrote {n} images ({options['writers']} writers x 62 characters x "
        f"{options['samples']}) to {path} in {time.perf_counter() - start:.1f} s"
    )


@data.command()
@click.argument("path", type=click.Path())
@click.option("--out", required=True, type=click.Path(), help="Dataset folder to write.")
@click.option("--size", default=G.size, show_default=True, type=int, help="Image side in pixels.")
@click.option(
    "--val-fraction",
    default=G.val_fraction,
    show_default=True,
    type=float,
    help="Share of each class's images held out for validation.",
)
@click.option(
    "--test-fraction",
    default=G.test_fraction,
    show_default=True,
    type=float,
    help="Share of each class's images held out for testing.",
)
@click.option("--seed", default=G.seed, show_default=True, type=int, help="Seeds the random split.")
@click.option(
    "--progress/--no-progress",
    default=True,
    show_default=True,
    help="Show a progress bar on stderr.",
)
def folder(path, out, progress, **options):
    """Turn your own character images into a dataset.

    \b
    PATH is a folder of class folders, or a CSV manifest:
      my_chars/Sample001/...  ..  my_chars/Sample062/...   (Chars74K naming; class i is
                               Sample{i+1:03d} in the order 0-9, A-Z, a-z; digits may also
                               be folders 0 .. 9; files may be in nested folders)
      my_chars/manifest.csv    or any file.csv: lines `path,label` (label one character,
                               paths relative to the CSV; a header line is optional)

    \b
    Letters cannot name class folders: on macOS and Windows `a` and `A` are the same folder.
    Files that are not readable images are skipped and listed. Each class is split at random.

    \b
    Example:
      charjax data folder my_chars/ --out data/mine
      charjax data folder labels.csv --out data/mine --val-fraction 0.2 --test-fraction 0
    """
    out_path = _check_out(out)
    result, report = build_folder_dataset(
        path, out_path, FolderOptions(**options), progress=progress
    )
    click.echo(report.summary())
    click.echo(f"wrote {report.used} images to {result}")


def _sha256_pairs(ctx, param, values) -> tuple[tuple[str, str], ...]:
    pairs = []
    for value in values:
        name, sep, digest = value.partition("=")
        if not sep:
            raise click.BadParameter(f"{value!r} is not NAME=HEX", ctx, param)
        pairs.append((name.strip(), digest.strip()))
    return tuple(pairs)


@data.command()
@click.option(
    "--subsets",
    default=",".join(C.subsets),
    show_default=True,
    help="Comma-separated: font (62,992 font renderings), hand (3,410 tablet drawings by "
    "55 writers), img_good (7,705 photo crops), img_bad (4,798 poorer photo crops).",
)
@click.option(
    "--out",
    type=click.Path(),
    default=None,
    help="Dataset folder to write [default: the one `--data chars74k:SUBSETS:SPLIT` uses, "
    "under ~/.cache/charjax].",
)
@click.option("--size", default=C.size, show_default=True, type=int, help="Image side in pixels.")
@click.option(
    "--split",
    default=C.split,
    show_default=True,
    type=click.Choice(SPLIT_MODES),
    help="random: each class at random; writer: the hand subset by writer (the others at random).",
)
@click.option(
    "--val-fraction",
    default=C.val_fraction,
    show_default=True,
    type=float,
    help="Share of each class (or of the writers) for validation.",
)
@click.option(
    "--test-fraction",
    default=C.test_fraction,
    show_default=True,
    type=float,
    help="Share of each class (or of the writers) for testing.",
)
@click.option("--seed", default=C.seed, show_default=True, type=int, help="Seeds the split.")
@click.option(
    "--url-base",
    default=None,
    help=f"Where the archives are [default: ${URL_ENV}, else {OFFICIAL_URL}].",
)
@click.option(
    "--from-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Use the archives (or their unpacked English/ folder) in this folder; no network.",
)
@click.option(
    "--download-dir",
    "download_to",
    type=click.Path(file_okay=False),
    default=None,
    help="Where downloaded archives are kept [default: ~/.cache/charjax/downloads].",
)
@click.option(
    "--sha256",
    multiple=True,
    metavar="NAME=HEX",
    callback=_sha256_pairs,
    help="Expected sha256 of an archive, e.g. EnglishHnd.tgz=ab12... (repeatable).",
)
@click.option(
    "--workers",
    default=C.workers,
    show_default=True,
    type=click.IntRange(0),
    help="Processes decoding images (0: one per CPU for the large archives).",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask before downloading.")
@click.option(
    "--progress/--no-progress",
    default=True,
    show_default=True,
    help="Show progress bars on stderr.",
)
def chars74k(out, subsets, download_to, yes, progress, **options):
    """Download and prepare the Chars74K English dataset.

    \b
    Example:
      charjax data chars74k                            font, hand and img_good
      charjax data chars74k --subsets hand --split writer --out data/hand
      charjax data chars74k --from-dir ~/Downloads     archives you already have

    EnglishFnt.tgz (~51 MB), EnglishHnd.tgz (~13 MB) and EnglishImg.tgz (~128 MB) are
    downloaded as the subsets need them (resuming after an interruption) and kept, then
    read without unpacking. Each class of each subset is split 70/10/20 train/val/test at
    random (seeded: the same on every run); with --split writer the hand subset is split by
    writer instead, so no writer is in two splits. Running again when the dataset is complete
    does nothing. Train on it with `charjax train --data chars74k:font,hand` (or --data OUT).
    """
    opts = Chars74kOptions(subsets=tuple(s.strip() for s in subsets.split(",")), **options)
    out_path = _check_out(out) if out else default_chars74k_cache(opts)
    download_to = Path(download_to) if download_to else download_dir()
    ask = not yes and sys.stdin.isatty()  # scripts and CI runs are never stopped by a prompt
    report = prepare_chars74k(
        out_path,
        opts,
        download_dir=download_to,
        progress=progress,
        confirm=(lambda question: click.confirm(question, abort=True, err=True)) if ask else None,
    )
    click.echo(report.summary())
    if not opts.from_dir and not report.up_to_date:
        click.echo(f"archives kept in {download_to} (needed only to prepare again)")
    data_arg = out_path if out else f"chars74k:{','.join(opts.ordered)}:{opts.split}"
    click.echo(f"train with: charjax train --data {data_arg} --image-size {opts.size}")


@data.command()
@click.argument("dataset", type=click.Path())
@click.option(
    "--sheet",
    type=click.Path(dir_okay=False),
    help="Write a contact sheet PNG of samples per class.",
)
@click.option(
    "--augmented",
    is_flag=True,
    help="On the sheet, show each sample after training augmentation beside it.",
)
@click.option(
    "--outline",
    default=0.0,
    type=click.FloatRange(0, 1),
    metavar="P",
    help="With --augmented: hollow this share of the samples, as `train --outline P` does.",
)
@click.option(
    "--per-class",
    default=4,
    show_default=True,
    type=click.IntRange(1, 32),
    help="Samples per class on the sheet.",
)
@click.option(
    "--split",
    default="all",
    show_default=True,
    type=click.Choice([*SPLITS, "all"]),
    help="Which split the sheet's samples come from.",
)
@click.option(
    "--seed",
    default=0,
    show_default=True,
    type=int,
    help="Chooses the samples (and the augmentation).",
)
def info(dataset, sheet, augmented, outline, per_class, split, seed):
    """Show what a prepared dataset holds; optionally draw a contact sheet.

    \b
    Example:
      charjax data info data/fonts
      charjax data info data/fonts --sheet fonts.png --augmented --per-class 6
      charjax data info data/fonts --sheet hollow.png --augmented --outline 0.5
    """
    if augmented and not sheet:
        raise click.UsageError("--augmented draws on the contact sheet; add --sheet FILE.png")
    if outline and not augmented:
        raise click.UsageError("--outline hollows augmented samples; add --augmented")
    if sheet and Path(sheet).suffix.lower() != ".png":
        raise CharjaxError(f"--sheet {sheet}: the contact sheet is a PNG; name it *.png")
    cache = load_cache(dataset)
    click.echo(describe(cache))
    if sheet:
        image = contact_sheet(
            cache,
            per_class=per_class,
            split=split,
            augmented=augmented,
            outline=outline,
            seed=seed,
        )
        written = save_png(image, sheet)
        click.echo(f"sheet       {written} ({image.width}x{image.height})")
