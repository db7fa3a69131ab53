"""The latent-space walk: glyph morphing into glyph, as an H.264 mp4, a gif or a PNG strip.

    charjax walk --checkpoint runs/vae --chars "A3bZ" --classifier runs/resnet --out walk.mp4

Keyframe glyphs (image files, rendered characters, random dataset glyphs) are encoded, the
path visits their codes in order with `steps` frames per segment (interpolated linearly or
by slerp), and every frame is decoded in jitted batches. The frame at `i * steps` is exactly
keyframe i decoded. With a classifier, each frame is captioned with its top prediction, so
the viewer sees where A stops being A.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from charjax.atomic import atomic_path
from charjax.data.font_render import RenderJob, render_face
from charjax.data.fonts import find_font_files
from charjax.data.sources import resolve_data
from charjax.errors import CharjaxError
from charjax.generate import INTERPOLATIONS, Generator, class_indices, interpolate, lerp
from charjax.labels import CLASSES
from charjax.predict import Predictor
from charjax.preprocess import PreprocessSpec, preprocess
from charjax.viz.glyphs import to_paper
from charjax.viz.grid import enlarge, label_font, save_png, tile_grid

OUTPUTS = (".mp4", ".gif", ".png")
_STRIP_COLUMNS = 9  # frames per segment in a PNG strip: t = 0, 1/8, ..., 1
_STRIP_SIZE = 128
_CAPTION_GREY = (110, 110, 110)
_BAR_GREY = (190, 190, 190)


@dataclass(frozen=True)
class WalkOptions:
    """How the walk looks; all defaults live here.

    Attributes:
      seconds_per_step: time from one keyframe glyph to the next.
      fps: frames per second of the video.
      interp: "linear" or "slerp" (see `charjax.generate.slerp`).
      size: side of the glyph panel in the video, pixels (a caption band goes below it).
      random: how many random glyphs of the run's dataset to add as keyframes.
      chars: characters to render from `font` as keyframes.
      font: the font file for `chars` (default: DejaVu Sans if installed, else the first font).
      seed: seeds the choice of random glyphs.
    """

    seconds_per_step: float = 3.0
    fps: int = 30
    interp: str = "linear"
    size: int = 256
    random: int = 0
    chars: str = ""
    font: str | None = None
    seed: int = 0

    def __post_init__(self):
        checks = [
            (self.seconds_per_step > 0, "--seconds-per-step must be positive"),
            (1 <= self.fps <= 120, f"--fps must be in [1, 120], got {self.fps}"),
            (self.interp in INTERPOLATIONS, f"--interp must be one of {INTERPOLATIONS}"),
            # H.264 in yuv420p needs even sides.
            (64 <= self.size <= 1024 and self.size % 2 == 0, "--size must be even, 64..1024"),
            (self.random >= 0, "--random must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise CharjaxError(message)

    @property
    def steps(self) -> int:
        """Frames per segment (from one keyframe up to, not including, the next)."""
        return max(1, round(self.seconds_per_step * self.fps))


@dataclass(frozen=True)
class Keyframe:
    image: np.ndarray  # uint8 [S, S], model space (ink bright on black)
    label: int | None  # class index, when known
    name: str  # for captions: the character, or the file's stem


@dataclass(frozen=True)
class Walk:
    keyframes: list[Keyframe]
    glyphs: np.ndarray  # float32 [F, S, S] in [0, 1], model space
    segment: np.ndarray  # int [F]: frame i lies between keyframes segment[i] and segment[i] + 1
    t: np.ndarray  # float [F]: position within the segment, 0..1
    predictions: list[str] | None  # the classifier's caption per frame ("A 97%")


def default_font() -> Path:
    fonts = find_font_files()
    if not fonts:
        raise CharjaxError("no font files found on this machine; pass --font FILE")
    return next((f for f in fonts if f.name == "DejaVuSans.ttf"), fonts[0])


def render_chars(chars: str, spec: PreprocessSpec, font=None) -> np.ndarray:
    """Characters drawn from a font exactly as the font dataset draws them: uint8 [N, S, S]."""
    indices = class_indices(chars)
    path = Path(font) if font else default_font()
    if not path.is_file():
        raise CharjaxError(f"no such font file: {path}")
    job = RenderJob(str(path), 0, path.stem, spec.to_dict(), variants=1, seed=0)
    try:
        glyphs = render_face(job)  # [62, S, S], in CLASSES order
    except (OSError, ValueError) as e:
        raise CharjaxError(f"cannot draw with font {path}: {e}") from None
    return glyphs[indices]


def random_glyphs(gen: Generator, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n glyphs and labels drawn from the run's own dataset (val split, else train)."""
    cache = resolve_data(gen.meta["data"]["path"], gen.image_size, gen.config.data_dir)
    split = "val" if len(cache.indices("val")) else "train"
    arrays = cache.arrays(split)
    count = len(arrays["label"])
    pick = np.random.default_rng(seed).choice(count, n, replace=n > count)
    return arrays["image"][pick], arrays["label"][pick]


def classify(classifier: Predictor, glyphs: np.ndarray) -> np.ndarray:
    """Class probabilities [N, 62] of model-space glyphs, seen through the classifier's spec."""
    paper = to_paper(glyphs)  # dark on white: what preprocess expects from any image
    return classifier.probabilities(np.stack([preprocess(g, classifier.spec) for g in paper]))


def collect_keyframes(
    gen: Generator,
    images: Sequence = (),
    options: WalkOptions = WalkOptions(),
    classifier: Predictor | None = None,
) -> list[Keyframe]:
    """The walk's stops: `images` (files), then `options.chars`, then `options.random` glyphs.

    A CVAE decodes with a class, so images of unknown class are recognised by `classifier`.
    """
    frames = []
    if images:
        pre = gen.preprocess(list(images))
        labels = [None] * len(pre)
        if gen.conditional:
            if classifier is None:
                raise CharjaxError(
                    "a CVAE needs the class of each image: pass --classifier RUN to recognise "
                    "them, or walk through --chars / --random glyphs"
                )
            labels = list(classify(classifier, pre / 255.0).argmax(1))
        frames += [
            Keyframe(im, lab, Path(str(p)).stem if isinstance(p, str | Path) else f"image {i}")
            for i, (im, lab, p) in enumerate(zip(pre, labels, images, strict=True))
        ]
    if options.chars:
        rendered = render_chars(options.chars, gen.spec, options.font)
        frames += [
            Keyframe(im, CLASSES.index(c), c) for im, c in zip(rendered, options.chars, strict=True)
        ]
    if options.random:
        picked, labels = random_glyphs(gen, options.random, options.seed)
        frames += [
            Keyframe(im, int(lab), CLASSES[lab]) for im, lab in zip(picked, labels, strict=True)
        ]
    if len(frames) < 2:
        raise CharjaxError("a walk needs at least two glyphs: give images, --chars or --random")
    return frames


def make_walk(
    gen: Generator,
    keyframes: list[Keyframe],
    steps: int,
    interp: str = "linear",
    classifier: Predictor | None = None,
) -> Walk:
    """Encodes the keyframes, interpolates `steps` frames per segment and decodes them all.

    Returns:
      A Walk of (len(keyframes) - 1) * steps + 1 frames; frame i * steps is keyframe i.
    """
    z = gen.encode(np.stack([k.image for k in keyframes]))  # [K, L]
    labels = [k.label for k in keyframes]
    cond = gen.condition(labels if gen.conditional else None, len(keyframes))  # [K, 62]
    ts = np.arange(steps) / steps
    segments = range(len(keyframes) - 1)
    codes = [interpolate(z[i], z[i + 1], ts, interp) for i in segments] + [z[-1:]]
    # The class moves along a straight line between one-hots: a mixture of the two.
    conds = [lerp(cond[i], cond[i + 1], ts) for i in segments] + [cond[-1:]]
    glyphs = gen.decode(np.concatenate(codes), np.concatenate(conds))
    predictions = None
    if classifier is not None:
        probs = classify(classifier, glyphs)
        top = probs.argmax(1)
        predictions = [f"{CLASSES[j]} {p[j]:.0%}" for j, p in zip(top, probs, strict=True)]
    return Walk(
        keyframes=keyframes,
        glyphs=glyphs,
        segment=np.concatenate([np.full(steps, i) for i in segments] + [[len(keyframes) - 2]]),
        t=np.concatenate([ts for _ in segments] + [[1.0]]),
        predictions=predictions,
    )


class FrameRenderer:
    """Draws one frame: the glyph (dark on white) over a caption band.

    The band shows the segment ("A → 3") on the left, the classifier's top prediction on the
    right, and a thin bar along its bottom edge for the position within the segment.
    """

    def __init__(self, size: int):
        self.size = size
        self.band = 2 * math.ceil(max(12, size // 5) / 2)  # even, for H.264
        self.font = label_font(max(9, self.band // 2))
        # DejaVu is read from a file; Pillow's own font, the fallback, may lack the arrow.
        self.arrow = " → " if isinstance(getattr(self.font, "path", None), str) else " -> "

    @property
    def shape(self) -> tuple[int, int]:
        """(width, height) of a frame."""
        return self.size, self.size + self.band

    def __call__(self, walk: Walk, i: int) -> np.ndarray:
        """Frame i of `walk` as uint8 RGB [H, W, 3]."""
        glyph = enlarge(to_paper(walk.glyphs[i]), self.size, smooth=True)
        frame = Image.new("RGB", self.shape, "white")
        frame.paste(glyph.convert("RGB"))
        draw = ImageDraw.Draw(frame)
        seg = int(walk.segment[i])
        a, b = walk.keyframes[seg].name, walk.keyframes[seg + 1].name
        mid = self.size + self.band // 2 - 1
        pad = max(3, self.size // 40)
        draw.text((pad, mid), a + self.arrow + b, fill=_CAPTION_GREY, font=self.font, anchor="lm")
        if walk.predictions is not None:
            draw.text((self.size - pad, mid), walk.predictions[i], "black", self.font, "rm")
        bar = max(2, self.band // 12)
        width = round(float(walk.t[i]) * self.size)
        draw.rectangle((0, self.size + self.band - bar, width, self.size + self.band), _BAR_GREY)
        return np.asarray(frame)


def strip(walk: Walk, steps: int, size: int = _STRIP_SIZE) -> Image.Image:
    """A PNG-able picture of the walk: one row per segment, frames at t = 0, 1/8, ..., 1."""
    render = FrameRenderer(size)
    frames = [
        Image.fromarray(render(walk, r * steps + round(c * steps / (_STRIP_COLUMNS - 1))))
        for r in range(len(walk.keyframes) - 1)
        for c in range(_STRIP_COLUMNS)
    ]
    return tile_grid(frames, _STRIP_COLUMNS, gap=2, fill="#ccc")


def write_video(render: Callable[[int], np.ndarray], n_frames: int, fps: int, out, progress=True):
    """Writes frames render(0..n_frames-1) as an H.264 mp4 or a gif (by `out`'s extension)."""
    # moviepy is the optional `video` extra, and slow to import: load it only to write.
    try:
        from moviepy import VideoClip
    except ImportError:
        raise CharjaxError("writing video needs moviepy: pip install 'charjax[video]'") from None
    out = Path(out)
    with tqdm(total=n_frames, unit="frame", desc=f"render {out.name}", disable=not progress) as bar:

        def frame_at(t: float) -> np.ndarray:
            i = min(int(round(t * fps)), n_frames - 1)
            bar.update(max(0, i + 1 - bar.n))
            return render(i)

        # moviepy writes int(duration * fps) frames, and (n / fps) * fps can round to just
        # below n (49 / 49 * 49 = 48.99...), losing the last frame; half a frame more cannot.
        clip = VideoClip(frame_at, duration=(n_frames + 0.5) / fps)
        # ffmpeg picks the container from the extension, which the temp file keeps.
        try:
            with atomic_path(out) as tmp:
                if out.suffix.lower() == ".gif":
                    clip.write_gif(str(tmp), fps=fps, logger=None)
                else:
                    clip.write_videofile(
                        str(tmp),
                        fps=fps,
                        codec="libx264",
                        audio=False,
                        pixel_format="yuv420p",  # what players expect of H.264
                        ffmpeg_params=["-crf", "18"],  # thin strokes stay crisp
                        logger=None,
                    )
        except OSError as e:
            raise CharjaxError(f"cannot write {out}: {e}") from None
        finally:
            clip.close()


def write_walk(
    checkpoint,
    out,
    images: Sequence = (),
    *,
    options: WalkOptions = WalkOptions(),
    classifier=None,
    progress: bool = True,
) -> dict:
    """Makes the latent-space walk of a generative run and writes it to `out`.

    Args:
      checkpoint: an autoencoder, VAE or CVAE run.
      out: .mp4 (H.264), .gif, or .png (a strip: one row per segment, 9 frames each).
      images: image files to walk through (preprocessed with the run's spec).
      options: keyframe sources besides `images`, timing, interpolation and size.
      classifier: a classifier run; captions each frame with its top prediction.
      progress: show a progress bar while rendering.
    Returns:
      {"out", "frames", "fps", "seconds", "size": [w, h], "keyframes": [names]}.
    """
    out = Path(out)
    if out.suffix.lower() not in OUTPUTS:
        raise CharjaxError(f"--out {out}: the walk is written as {', '.join(OUTPUTS)}")
    gen = Generator.load(checkpoint)
    clf = Predictor.load(classifier) if classifier else None
    keyframes = collect_keyframes(gen, images, options, clf)
    walk = make_walk(gen, keyframes, options.steps, options.interp, clf)
    n = len(walk.glyphs)
    if out.suffix.lower() == ".png":
        picture = strip(walk, options.steps)
        save_png(picture, out)
        size = picture.size
    else:
        render = FrameRenderer(options.size)
        write_video(lambda i: render(walk, i), n, options.fps, out, progress)
        size = render.shape
    return {
        "out": str(out),
        "frames": n,
        "fps": options.fps,
        "seconds": n / options.fps,
        "size": list(size),
        "keyframes": [k.name for k in keyframes],
    }
