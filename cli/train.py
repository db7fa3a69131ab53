"""`charjax train`: options -> TrainConfig -> charjax.fit.fit."""

import json

import click
from click.core import ParameterSource

from charjax import distributed
from charjax.backend import DTYPES
from charjax.config import FREEZE, SCHEDULES, TrainConfig
from charjax.finetune import FINETUNE, finetune_config
from charjax.fit import fit
from charjax.preprocess import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE

D = TrainConfig()  # defaults shown in --help come from the one config


@click.command()
@click.option(
    "--arch", default=D.arch, show_default=True, help="Model name (see `charjax models`)."
)
@click.option(
    "--data",
    default=D.data,
    show_default=True,
    help="'fonts' (built from this machine's fonts on first use), 'handwriting' (synthetic, "
    "built on first use), "
    "'chars74k[:SUBSETS[:SPLIT]]' (downloaded and prepared on first use), 'folder:IMAGES' "
    "(your own images in class folders, prepared on use), a dataset directory prepared with "
    "`charjax data`, or a mixture: 'A+B', weighted 'A:0.7+B:0.3'; a part ending in "
    "':nocase' teaches c o s v w x z's shape but not their case "
    "('fonts:0.7+data/hand:0.3:nocase').",
)
@click.option(
    "--data-dir",
    default=None,
    help="Where built datasets (fonts, handwriting, chars74k, folder:), downloaded archives and "
    "mixtures are kept "
    "[default: $CHARJAX_CACHE, else ~/.cache/charjax].",
)
@click.option(
    "--workdir",
    required=True,
    type=click.Path(file_okay=False),
    help="Run directory: checkpoints, config.json, metrics.jsonl. An existing one is resumed.",
)
@click.option(
    "--image-size",
    default=D.image_size,
    show_default=True,
    type=int,
    help=f"Model input side in pixels ({MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE}).",
)
@click.option(
    "--batch-size",
    default=D.batch_size,
    show_default=True,
    type=int,
    help="Global batch size, split over all devices.",
)
@click.option(
    "--epochs",
    default=D.epochs,
    show_default=True,
    type=float,
    help="Passes over the train split (ignored with --steps).",
)
@click.option("--steps", default=None, type=int, help="Optimizer steps (overrides --epochs).")
@click.option("--lr", default=D.lr, show_default=True, type=float, help="Peak learning rate.")
@click.option(
    "--schedule",
    default=D.schedule,
    show_default=True,
    type=click.Choice(SCHEDULES),
    help="cosine: linear warmup then cosine decay; constant: flat.",
)
@click.option(
    "--warmup",
    default=D.warmup,
    show_default=True,
    type=float,
    help="Fraction of steps spent warming up.",
)
@click.option("--weight-decay", default=D.weight_decay, show_default=True, type=float)
@click.option("--label-smoothing", default=D.label_smoothing, show_default=True, type=float)
@click.option(
    "--ema",
    default=D.ema,
    show_default=True,
    type=float,
    metavar="DECAY",
    help="Keep a moving average of the weights with this decay (0.999: about the last "
    "thousand steps) and evaluate and save it as the model; 0: none.",
)
@click.option(
    "--augment",
    default=D.augment,
    show_default=True,
    type=float,
    help="Augmentation strength (0 = none).",
)
@click.option(
    "--outline",
    default=D.outline,
    show_default=True,
    type=float,
    metavar="P",
    help="Hollow this share of the training images to their outline, so the model reads "
    "outline fonts and bubble letters (0.1: one in ten); 0: none.",
)
@click.option("--seed", default=D.seed, show_default=True, type=int)
@click.option(
    "--eval-every",
    default=D.eval_every,
    show_default=True,
    type=int,
    help="Evaluate on the val split every N steps (0: at the end only).",
)
@click.option(
    "--checkpoint-every",
    default=D.checkpoint_every,
    show_default=True,
    type=int,
    help="Save a checkpoint every N steps (always at the end and on Ctrl-C).",
)
@click.option(
    "--log-every",
    default=D.log_every,
    show_default=True,
    type=int,
    help="Write train metrics to metrics.jsonl every N steps.",
)
@click.option(
    "--tensorboard",
    is_flag=True,
    help="Also write TensorBoard event files to WORKDIR/tensorboard (needs "
    "'charjax[tensorboard]'; view with `tensorboard --logdir WORKDIR`).",
)
@click.option(
    "--histogram-every",
    default=D.histogram_every,
    show_default=True,
    type=int,
    help="With --tensorboard: write histograms of the params every N steps.",
)
@click.option(
    "--latent-dim",
    default=None,
    type=click.IntRange(1, 1024),
    help="Autoencoders: size of the latent code [default: the arch's own, 64].",
)
@click.option(
    "--beta",
    default=D.beta,
    show_default=True,
    type=float,
    help="VAEs: weight of the KL term (loss = reconstruction + beta * KL).",
)
@click.option(
    "--dtype",
    default=D.dtype,
    show_default=True,
    type=click.Choice(DTYPES),
    help="Compute dtype (params stay float32). auto: bfloat16 on GPU/TPU, float32 on CPU, "
    "where XLA computes convolutions in float32 anyway.",
)
@click.option(
    "--init-from",
    default=None,
    metavar="pretrained|RUN",
    help="Fine-tune a classifier: start from the bundled model's (or a run's) params and "
    "batch statistics with a new optimizer; its arch, image size and preprocessing are kept, "
    f"and options left out take fine-tuning defaults (--lr {FINETUNE.lr:g}, --steps "
    f"{FINETUNE.steps}, --batch-size {FINETUNE.batch_size}, --warmup {FINETUNE.warmup:g}). "
    f"A small --data of your own images gets a {FINETUNE.replay!r} replay mixed in.",
)
@click.option(
    "--freeze",
    default=D.freeze,
    show_default=True,
    type=click.Choice(FREEZE),
    help="With --init-from: backbone trains only the last dense layer.",
)
@click.option(
    "--progress/--no-progress", default=True, show_default=True, help="Show a progress bar."
)
@click.option(
    "--coordinator",
    envvar=distributed.ENV_COORDINATOR,
    show_envvar=True,
    metavar="HOST:PORT",
    help="Multi-process run: process 0's address and a free port, the same on every process.",
)
@click.option(
    "--num-processes",
    envvar=distributed.ENV_NUM_PROCESSES,
    show_envvar=True,
    type=click.IntRange(min=1),
    help="Multi-process run: how many processes (usually one per machine).",
)
@click.option(
    "--process-id",
    envvar=distributed.ENV_PROCESS_ID,
    show_envvar=True,
    type=click.IntRange(min=0),
    help="Multi-process run: this process's index, 0 .. N-1 (0 runs the coordinator).",
)
@click.option(
    "--distributed",
    "distributed_mode",
    envvar=distributed.ENV_MODE,
    show_envvar=True,
    default="off",
    show_default=True,
    type=click.Choice(distributed.MODES),
    help="auto: detect the processes from SLURM, Open MPI or a Cloud TPU VM.",
)
@click.option(
    "--init-timeout",
    envvar=distributed.ENV_INIT_TIMEOUT,
    show_envvar=True,
    default=distributed.DistributedSpec.init_timeout,
    show_default=True,
    type=click.IntRange(min=1),
    help="Multi-process run: seconds to wait for every process to connect.",
)
@click.option(
    "--heartbeat-timeout",
    envvar=distributed.ENV_HEARTBEAT_TIMEOUT,
    show_envvar=True,
    default=distributed.DistributedSpec.heartbeat_timeout,
    show_default=True,
    type=click.IntRange(min=1),
    help="Multi-process run: a process silent this long counts as dead and the run stops.",
)
def train(
    workdir,
    progress,
    coordinator,
    num_processes,
    process_id,
    distributed_mode,
    init_timeout,
    heartbeat_timeout,
    **options,
):
    """Train a character classifier or a generative model (or resume one).

    \b
    Example:
      charjax train --arch resnet-small --workdir runs/resnet
      charjax train --arch cnn-small --image-size 64 --epochs 30 --workdir runs/cnn64
      charjax train --arch tiny --steps 200 --workdir runs/tb --tensorboard
      charjax train --arch vae --latent-dim 16 --augment 0.3 --workdir runs/vae
      charjax train --init-from pretrained --data folder:my_samples --workdir runs/mine
      charjax train --data fonts:0.7+handwriting:0.3:nocase --workdir runs/mix
      charjax train --steps 3000 --ema 0.999 --workdir runs/ema
      charjax train --outline 0.1 --workdir runs/outline

    Running the same command again on the same --workdir resumes from the latest checkpoint;
    Ctrl-C saves a checkpoint first. To train on several machines, run it on each with
    --coordinator, --num-processes and --process-id (README: "Training on more than one
    machine").
    """
    say = lambda s: click.echo(s, err=True)
    if options["init_from"]:
        ctx = click.get_current_context()
        given = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
        explicit = {name for name in options if ctx.get_parameter_source(name) in given}
        config = finetune_config(options, explicit, say)
    else:
        config = TrainConfig(**options)  # every other option is a config field
    spec = distributed.spec_from_options(
        coordinator, num_processes, process_id, distributed_mode, init_timeout, heartbeat_timeout
    )
    distributed.initialize(spec, echo=say)
    with distributed.exit_on_lost_peer():
        summary = fit(config, workdir, progress=progress, echo=say)
    val = summary["val"] or {}
    keys = ("workdir", "step", "best_val_accuracy", "best_val_loss", "seconds", "images_per_sec")
    keys += ("params_digest",)  # the same on every process of a multi-process run
    result = {k: summary[k] for k in keys if k in summary}
    if "best_val_accuracy" in summary:
        result |= {"val_accuracy": val.get("accuracy"), "val_accuracy_ci": val.get("accuracy_ci")}
    else:  # a generative model: reconstruction error, and KL for the VAEs
        result |= {f"val_{k}": v for k, v in val.items() if k in ("loss", "mse", "kl")}
    click.echo(json.dumps(result))
