"""The classifier's loss: smoothed cross-entropy, and the shape-only one of `:nocase` parts."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from charjax.labels import CLASSES, SAME_SHAPE_LETTERS, case_partners
from charjax.losses import Classification, shape_nll

C, BIG_C, A, BIG_A = (CLASSES.index(c) for c in "cCaA")


def _logits(*favoured):
    """One row per favoured class: it gets logit 8, the rest 0."""
    return jnp.asarray([np.eye(len(CLASSES))[i] * 8.0 for i in favoured], jnp.float32)


def _loss(logits, labels, nocase=None, label_smoothing=0.0):
    batch = {"label": jnp.asarray(labels), "mask": jnp.ones(len(labels), bool)}
    if nocase is not None:
        batch["nocase"] = jnp.asarray(nocase)
    apply_fn = lambda variables, x, **kw: (logits, {})  # noqa: E731
    loss, _ = Classification(label_smoothing).loss(apply_fn, {}, None, batch, None)
    return float(loss)


def test_case_partners_pair_the_same_shape_letters_only():
    partners = case_partners()
    assert [CLASSES[partners[CLASSES.index(c)]] for c in "cCzZ"] == list("CcZz")
    moved = {CLASSES[i] for i in np.flatnonzero(partners != np.arange(len(CLASSES)))}
    assert moved == set(SAME_SHAPE_LETTERS + SAME_SHAPE_LETTERS.upper())
    assert (partners[partners] == np.arange(len(CLASSES))).all()


def test_without_nocase_it_is_optax_smoothed_cross_entropy():
    logits = jax.random.normal(jax.random.PRNGKey(0), (5, len(CLASSES)))
    labels = np.array([C, BIG_C, A, 3, 61])
    targets = optax.smooth_labels(jax.nn.one_hot(labels, len(CLASSES)), 0.1)
    expected = float(optax.softmax_cross_entropy(logits, targets).mean())
    np.testing.assert_allclose(_loss(logits, labels, label_smoothing=0.1), expected, rtol=1e-6)
    # All-False flags change nothing.
    np.testing.assert_allclose(_loss(logits, labels, [False] * 5, 0.1), expected, rtol=1e-6)


def test_a_nocase_c_is_right_in_either_case_and_an_a_is_not():
    # Labelled c, the model says C: wrong for a part that teaches case, right for a :nocase one.
    assert _loss(_logits(BIG_C), [C], [False]) > 2.5
    assert _loss(_logits(BIG_C), [C], [True]) == pytest.approx(
        _loss(_logits(C), [C], [True]), rel=1e-4
    )
    assert _loss(_logits(BIG_C), [C], [True]) < 0.2
    # a and A are two shapes: the flag does not excuse the wrong case.
    assert _loss(_logits(BIG_A), [A], [True]) == _loss(_logits(BIG_A), [A], [False]) > 2.5


def test_shape_nll_is_minus_log_of_both_cases():
    logp = jax.nn.log_softmax(jax.random.normal(jax.random.PRNGKey(1), (2, len(CLASSES))))
    nll = shape_nll(logp, jnp.array([C, C]), jnp.array([True, False]))
    p = np.exp(np.asarray(logp))
    np.testing.assert_allclose(nll, [-np.log(p[0, C] + p[0, BIG_C]), -np.log(p[1, C])], rtol=1e-5)
