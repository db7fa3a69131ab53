"""A run loaded for inference: pad-to-bucket batching, and evaluation reading a checkpoint once."""

import numpy as np
import pytest

import charjax.evaluate
import charjax.loaded
from charjax.checkpoint import load_for_inference
from charjax.errors import CharjaxError
from charjax.generate import Generator
from charjax.loaded import BUCKETS, batched, buckets
from charjax.predict import Predictor


def test_batched_pads_every_chunk_to_a_bucket_and_keeps_row_order():
    seen = []

    def fn(x, y):
        seen.append(len(x))
        return x * 10 + y

    n = BUCKETS[-1] + 3  # one full chunk, then 3 rows padded to the next bucket up
    x = np.arange(n, dtype=np.int64)
    out = batched(fn, x, np.ones(n, np.int64))
    assert seen == [BUCKETS[-1], 8]
    np.testing.assert_array_equal(out, x * 10 + 1)


def test_buckets_pad_with_zeros_and_say_how_many_rows_are_real():
    images = np.full((5, 2, 2), 7, np.uint8)
    (padded,), rows = next(buckets(images))
    assert rows == 5 and padded.shape == (8, 2, 2) and padded.dtype == np.uint8
    assert (padded[:5] == 7).all() and (padded[5:] == 0).all()
    assert list(buckets(images[:0])) == []


def test_evaluation_reads_the_checkpoint_once(tiny_run, glyph_cache, monkeypatch):
    reads = []

    def counted(path):
        reads.append(path)
        return load_for_inference(path)

    monkeypatch.setattr(charjax.evaluate, "load_for_inference", counted)
    monkeypatch.setattr(charjax.loaded, "load_for_inference", counted)
    report = charjax.evaluate.evaluate_checkpoint(tiny_run, data=str(glyph_cache))
    assert len(reads) == 1
    # The same numbers as a Predictor loaded on its own gives.
    predictor = Predictor.load(tiny_run)
    images, labels, _ = charjax.evaluate.load_eval_data(predictor, str(glyph_cache), "test")
    top1 = predictor.probabilities(np.asarray(images)).argmax(1) == np.asarray(labels)
    assert report["n"] == len(labels) and report["top1"] == pytest.approx(top1.mean())


def test_each_loaded_run_refuses_the_other_kind(tiny_run):
    with pytest.raises(CharjaxError, match="not an autoencoder, VAE or CVAE"):
        Generator.load(tiny_run)
    variables, meta = load_for_inference(tiny_run)
    with pytest.raises(CharjaxError, match="holds a vae model, not a character classifier"):
        Predictor.from_loaded(variables, {**meta, "kind": "vae"}, "somewhere")
