"""What a run minimises, chosen by its model's registry kind.

    classifier                  softmax cross-entropy (shape-only for `:nocase` data parts);
                                best checkpoint by val accuracy
    autoencoder, vae, cvae      reconstruction (+ beta * KL for the VAEs); best by val loss

An objective is a frozen dataclass, so it is hashable and `train_step` takes it as a static
argument: the step stays one pure function, `train_step(state, batch) -> (state, metrics)`,
and only the loss and the metrics it reports differ between kinds.
"""

from dataclasses import dataclass
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import optax

from charjax.config import TrainConfig
from charjax.labels import FOLD_TABLE, case_partners
from charjax.models import model_kind


def _apply(apply_fn, variables, *args, rngs, **kw):
    """A train-mode forward pass that also returns the updated batch stats ({} if none)."""
    out, updates = apply_fn(variables, *args, train=True, rngs=rngs, mutable=["batch_stats"], **kw)
    return out, updates.get("batch_stats", {})


def classification_hits(scores, labels) -> dict[str, jax.Array]:
    """Which predictions are right, per example: the one accuracy function of charjax.

    Args:
      scores: class scores [N, C] (logits or probabilities; only their order matters).
      labels: true classes, int [N].
    Returns:
      bool [N] each: "top1" (the highest score is the label; ties go to the lower index),
      "top5" (the label is among the five highest) and "top1_case_insensitive" (the highest
      is the label up to case, as `charjax.labels.FOLD_TABLE` folds them).
    """
    top = jax.lax.top_k(jnp.asarray(scores), 5)[1]  # [N, 5], best first
    labels = jnp.asarray(labels)
    fold = jnp.asarray(FOLD_TABLE)
    return {
        "top1": top[:, 0] == labels,
        "top5": jnp.any(top == labels[:, None], -1),
        "top1_case_insensitive": fold[top[:, 0]] == fold[labels],
    }


def _classification_sums(logits, labels, mask) -> dict[str, jax.Array]:
    """Correct predictions, as sums weighted by `mask` (padding in eval batches)."""
    hits = classification_hits(logits, labels)
    mask = mask.astype(jnp.float32)
    return {
        "correct": jnp.sum(hits["top1"] * mask),
        "correct_ci": jnp.sum(hits["top1_case_insensitive"] * mask),
        "correct_top5": jnp.sum(hits["top5"] * mask),
        "count": jnp.sum(mask),
    }


def shape_nll(logp, labels, nocase=None) -> jax.Array:
    """Per-example negative log-likelihood of the label, [B].

    Args:
      logp: log-probabilities [B, 62].
      labels: int [B].
      nocase: bool [B] or None. Where True and the label is a same-shape letter
        (`charjax.labels.SAME_SHAPE_LETTERS`), either case is right: -log(p(c) + p(C)). The
        image then teaches the letter's shape and leaves its case to the parts that know it.
    """
    picked = jnp.take_along_axis(logp, labels[:, None], -1)[:, 0]
    if nocase is None:
        return -picked
    partners = jnp.asarray(case_partners())[labels]
    other = jnp.take_along_axis(logp, partners[:, None], -1)[:, 0]
    either = jnp.logaddexp(picked, other)
    return -jnp.where(nocase & (partners != labels), either, picked)


@dataclass(frozen=True)
class Classification:
    """Softmax cross-entropy against (optionally smoothed) one-hot labels."""

    label_smoothing: float = 0.0

    best_metric: ClassVar[str] = "accuracy"
    higher_is_better: ClassVar[bool] = True
    # Accuracies are >= 0, so -1 has always meant "no val result yet" in checkpoints.
    no_best: ClassVar[float | None] = -1.0
    progress: ClassVar[dict[str, str]] = {"acc": "accuracy"}  # progress-bar name -> metric

    def loss(self, apply_fn, variables, x, batch, rng):
        """(mean loss, (batch stats, metrics)) of a training batch; x is the augmented input.

        The cross-entropy against one-hot labels smoothed by `label_smoothing`, written as
        (1 - eps) * nll - eps * mean(log p) so that an image of a `:nocase` part (batch
        "nocase") can have a shape-only nll (`shape_nll`).
        """
        logits, batch_stats = _apply(apply_fn, variables, x, rngs={"dropout": rng})
        logp = jax.nn.log_softmax(logits.astype(jnp.float32))  # [B, 62]
        nll = shape_nll(logp, batch["label"], batch.get("nocase"))
        eps = self.label_smoothing
        loss = ((1.0 - eps) * nll - eps * logp.mean(-1)).mean()
        sums = _classification_sums(logits, batch["label"], batch["mask"])
        return loss, (batch_stats, {"accuracy": sums["correct"] / sums["count"]})

    def eval_sums(self, apply_fn, variables, x, batch) -> dict[str, jax.Array]:
        """Sums of loss and correct predictions over the unmasked examples of a batch."""
        logits = apply_fn(variables, x, train=False)
        loss = optax.softmax_cross_entropy_with_integer_labels(
            logits.astype(jnp.float32), batch["label"]
        )
        sums = _classification_sums(logits, batch["label"], batch["mask"])
        sums["loss"] = jnp.sum(loss * batch["mask"])
        return sums

    def summarize(self, totals: dict[str, float]) -> dict[str, Any]:
        n = max(totals.get("count", 0.0), 1.0)
        return {
            "n": int(totals.get("count", 0)),
            "loss": totals.get("loss", 0.0) / n,
            "accuracy": totals.get("correct", 0.0) / n,
            "accuracy_ci": totals.get("correct_ci", 0.0) / n,
            "top5": totals.get("correct_top5", 0.0) / n,
        }


def reconstruction_terms(out, x) -> dict[str, jax.Array]:
    """Per-example terms of the generative loss, each [B].

    recon: binary cross-entropy of the pixel logits against the image, summed over pixels
      (the log-likelihood of a Bernoulli decoder, the usual choice for glyphs in [0, 1]);
    kl: KL(q(z|x) || N(0, I)), summed over latent dims (0 for the plain autoencoder);
    se: squared error of sigmoid(logits), summed over pixels (mse = se / pixels).
    """
    recon = optax.sigmoid_binary_cross_entropy(out.logits, x).sum(axis=(1, 2, 3))
    se = jnp.square(jax.nn.sigmoid(out.logits) - x).sum(axis=(1, 2, 3))
    if out.logvar is None:
        kl = jnp.zeros_like(recon)
    else:
        kl = 0.5 * jnp.sum(jnp.exp(out.logvar) + jnp.square(out.mean) - 1.0 - out.logvar, axis=-1)
    return {"recon": recon, "kl": kl, "se": se}


@dataclass(frozen=True)
class Reconstruction:
    """Reconstruction + beta * KL, per image, averaged over the batch.

    The input is also the target: with augmentation on, the model learns to reproduce the
    distorted glyph it was shown. Evaluation decodes the posterior mean (deterministic), so a
    VAE's val loss is a slightly optimistic estimate of its negative ELBO.
    """

    beta: float = 1.0
    variational: bool = True

    best_metric: ClassVar[str] = "loss"
    higher_is_better: ClassVar[bool] = False
    no_best: ClassVar[float | None] = None

    @property
    def progress(self) -> dict[str, str]:
        return {"mse": "mse", "kl": "kl"} if self.variational else {"mse": "mse"}

    def _loss(self, terms):
        return terms["recon"] + self.beta * terms["kl"]

    def loss(self, apply_fn, variables, x, batch, rng):
        """(mean loss, (batch stats, metrics)) of a training batch; x is the augmented input."""
        out, batch_stats = _apply(apply_fn, variables, x, batch["label"], rngs={"latent": rng})
        terms = reconstruction_terms(out, x)
        metrics = {"recon": terms["recon"].mean(), "mse": terms["se"].mean() / x[0].size}
        if self.variational:
            metrics["kl"] = terms["kl"].mean()
        return self._loss(terms).mean(), (batch_stats, metrics)

    def eval_sums(self, apply_fn, variables, x, batch) -> dict[str, jax.Array]:
        """Sums of the loss terms over the unmasked examples of a batch."""
        out = apply_fn(variables, x, batch["label"], train=False)
        terms = reconstruction_terms(out, x)
        mask = batch["mask"].astype(jnp.float32)
        sums = {k: jnp.sum(v * mask) for k, v in terms.items()}
        sums["loss"] = jnp.sum(self._loss(terms) * mask)
        sums["count"] = jnp.sum(mask)
        sums["pixels"] = jnp.sum(mask) * x[0].size
        return sums

    def summarize(self, totals: dict[str, float]) -> dict[str, Any]:
        n = max(totals.get("count", 0.0), 1.0)
        report = {
            "n": int(totals.get("count", 0)),
            "loss": totals.get("loss", 0.0) / n,
            "recon": totals.get("recon", 0.0) / n,
            "mse": totals.get("se", 0.0) / max(totals.get("pixels", 0.0), 1.0),
        }
        if self.variational:
            report["kl"] = totals.get("kl", 0.0) / n
        return report


Objective = Classification | Reconstruction


def objective_for(config: TrainConfig) -> Objective:
    """The objective of a run, chosen by the registry kind of `config.arch`."""
    kind = model_kind(config.arch)
    if kind == "classifier":
        return Classification(label_smoothing=config.label_smoothing)
    return Reconstruction(beta=config.beta, variational=kind != "autoencoder")


def improves(objective: Objective, value: float, best: float | None) -> bool:
    """Whether a val result `value` beats the best so far (`best` None: nothing yet)."""
    if best is None:
        return True
    return value > best if objective.higher_is_better else value < best
