"""`make demo` / `charjax demo`: the whole product on this machine's fonts, end to end.

Builds the font dataset (first run only), trains `resnet-small`, evaluates on the held-out
fonts, writes a few character images drawn with a held-out font and predicts them, then says
where everything is. Running it again resumes or reuses the finished run.
"""

from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from charjax.atomic import atomic_path
from charjax.config import TrainConfig
from charjax.data.font_render import load_face
from charjax.data.sources import resolve_data
from charjax.evaluate import evaluate_checkpoint
from charjax.fit import fit
from charjax.predict import load

SAMPLE_TEXT = "charJAX42"


@dataclass(frozen=True)
class DemoConfig:
    """The demo's run: the default training config with a fixed, ~10-minute step budget."""

    workdir: str = "runs/demo"
    samples_dir: str = "runs/demo/samples"
    steps: int = 1600  # ~8 min of resnet-small at 32 px on a 2-core CPU (see README)
    eval_every: int = 400

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            arch="resnet-small",
            steps=self.steps,
            eval_every=self.eval_every,
            checkpoint_every=self.eval_every,
        )


def write_samples(cache, out: Path, text: str = SAMPLE_TEXT) -> list[Path]:
    """Draws `text` one character per PNG with a test-split font, as dark ink on white paper.

    These are raw images, like a user's scans: `predict` preprocesses them itself.
    """
    test_groups = sorted(set(cache.groups[cache.indices("test")].tolist()))
    font_files = cache.meta.get("group_files") or []
    if not test_groups or not font_files:
        return []
    font = load_face(font_files[test_groups[0]], size=96)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, char in enumerate(text):
        image = Image.new("L", (160, 160), 255)
        ImageDraw.Draw(image).text((80, 80), char, font=font, fill=20, anchor="mm")
        path = out / f"{i:02d}_{char}.png"
        with atomic_path(path) as tmp:
            image.save(tmp)
        paths.append(path)
    return paths


def run_demo(config: DemoConfig = DemoConfig(), echo=print) -> dict:
    """Runs the demo and returns its numbers (also printed through `echo`)."""
    train_config = config.train_config()
    cache = resolve_data(train_config.data, train_config.image_size)
    summary = fit(train_config, config.workdir, echo=echo)
    report = evaluate_checkpoint(config.workdir, split="test")
    samples = write_samples(cache, Path(config.samples_dir))
    predictor = load(config.workdir)
    predictions = predictor.predict(samples, top_k=3) if samples else []

    echo("")
    echo("=" * 72)
    echo(
        f"charjax demo: {train_config.arch} trained {summary['step']} steps in "
        f"{summary['seconds'] / 60:.1f} min ({summary['images_per_sec']:.0f} images/s)"
    )
    echo(
        f"held-out fonts ({report['n']} images): top-1 {report['top1']:.1%}, "
        f"case-insensitive {report['top1_case_insensitive']:.1%}, top-5 {report['top5']:.1%}"
    )
    if predictions:
        echo(f"samples drawn with a held-out font, in {config.samples_dir}/:")
        for path, pred in zip(samples, predictions, strict=True):
            truth = path.stem.split("_", 1)[1]
            guesses = "  ".join(f"{c} {p:.0%}" for c, p in zip(pred.chars, pred.probs, strict=True))
            verdict = (
                ""
                if pred.top1 == truth
                else (
                    "   (right up to case)" if pred.top1.lower() == truth.lower() else "   (wrong)"
                )
            )
            echo(f"  {path.name:10s} -> {guesses}{verdict}")
    echo(f"run: {config.workdir}  (checkpoints, metrics.jsonl, config.json)")
    echo("next:")
    echo(f"  charjax predict --checkpoint {config.workdir} {config.samples_dir}/*.png")
    echo(f"  charjax eval --checkpoint {config.workdir} --split test")
    echo(f"  charjax data info {cache.path} --sheet sheet.png --augmented")
    echo("  charjax train --arch cnn-small --workdir runs/cnn   (see charjax train --help)")
    echo("=" * 72)
    return {
        "train": summary,
        "test": {k: report[k] for k in ("n", "top1", "top5", "top1_case_insensitive")},
    }
