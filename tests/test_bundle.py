"""tools/bundle.py's numbers: mistakes of shape apart from mistakes of case only."""

import numpy as np

from charjax.labels import CLASSES, NUM_CLASSES
from charjax.viz.report import confused_pairs
from tools.bundle import case_only_errors, shape_confusions


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
