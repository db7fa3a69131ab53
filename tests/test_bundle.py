"""tools/bundle.py's numbers: mistakes of shape apart from mistakes of case only, and held-out
writers' digits restricted to digits, and outline fonts scored on every split."""

import numpy as np

from charjax.data.handwriting import build_handwriting_dataset
from charjax.labels import CLASSES, NUM_CLASSES
from charjax.viz.report import confused_pairs
from tools.bundle import case_only_errors, outline_set, shape_confusions, writer_sets


def _confusion(mistakes: dict[tuple[str, str], int], right: int = 10) -> np.ndarray:
    confusion = np.eye(NUM_CLASSES, dtype=np.int64) * right
    for (true, guess), count in mistakes.items():
        confusion[CLASSES.index(true), CLASSES.index(guess)] = count
    return confusion


def test_shape_confusions_are_the_report_pairs_without_the_case_only_ones():
    confusion = _confusion({("o", "O"): 9, ("O", "0"): 5, ("q", "g"): 3, ("c", "C"): 2})
    assert shape_confusions(confusion) == [("O", "0", 5), ("q", "g", 3)]
    # The eval report counts every mistake, the case-only ones too.
    assert [p[:3] for p in confused_pairs(confusion)][:2] == [("o", "O", 9), ("O", "0", 5)]


def test_case_only_errors_count_the_case_pairs_over_all_examples():
    confusion = _confusion({("o", "O"): 9, ("O", "0"): 5, ("a", "A"): 6})
    shares = case_only_errors(confusion)
    n = confusion.sum()
    assert np.isclose(shares["all"], 15 / n) and np.isclose(shares["cosvwxz"], 9 / n)


class _ReadsDigitsAsLetters:
    """A stand-in model: answers every digit d as the letter CLASSES[10 + d] (0.6) over d
    itself (0.4), and every letter right."""

    def __init__(self, labels: np.ndarray):
        self.labels = labels

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        assert len(images) == len(self.labels)
        probs = np.zeros((len(self.labels), NUM_CLASSES), np.float32)
        for row, label in enumerate(self.labels):
            if label < 10:
                probs[row, 10 + label], probs[row, label] = 0.6, 0.4
            else:
                probs[row, label] = 1.0
        return probs


def test_writer_sets_restrict_the_digits_answer_to_digits(tmp_path):
    cache = build_handwriting_dataset(tmp_path / "hand", writers=10, workers=1)
    test = np.load(cache / "splits.npy") == 2
    labels = np.load(cache / "labels.npy")[test]
    numbers = writer_sets(_ReadsDigitsAsLetters(labels), cache)
    digits = numbers["held-out writers, digits"]
    assert digits["n"] == (labels < 10).sum() > 0
    assert digits["top1"] == 0.0 and digits["top1_restricted_to_digits"] == 1.0
    assert np.isclose(numbers["held-out writers"]["top1"], (labels >= 10).mean())


def test_outline_set_scores_every_split(tmp_path):
    # Outline faces are in no run's training data, so all of their images count, not only
    # the test split's.
    cache = build_handwriting_dataset(tmp_path / "hand", writers=10, workers=1)
    labels = np.load(cache / "labels.npy")
    assert len(set(np.load(cache / "splits.npy"))) == 3
    numbers = outline_set(_ReadsDigitsAsLetters(labels), cache)["outline fonts"]
    assert numbers["n"] == len(labels)
    assert np.isclose(numbers["top1"], (labels >= 10).mean())
