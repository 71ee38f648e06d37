"""chrF is sacrebleu's (the standard implementation), through one shared helper."""

import pytest
import sacrebleu

from brickwork.bricks.train_eval import chrf
from brickwork.errors import BrickworkError


def test_chrf_by_hand():
    # 'ab' vs 'ac': unigram precision = recall = 1/2, bigram 0; sacrebleu averages the two
    # orders that have n-grams on both sides -> P = R = 1/4 -> F2 = 25.
    assert chrf(["ab"], ["ac"]) == pytest.approx(25.0)
    assert chrf(["ab"], ["ab"]) == pytest.approx(100.0)
    assert chrf(["xy"], ["ab"]) == 0.0


def test_chrf_equals_sacrebleu_corpus_score():
    hypotheses = ["The dog bit the man.", "It was not unexpected."]
    references = ["The dog had bit the man.", "No one was surprised."]
    expected = sacrebleu.corpus_chrf(hypotheses, [references]).score
    assert chrf(hypotheses, references) == pytest.approx(expected)
    assert 0 < chrf(hypotheses, references) < 100


def test_chrf_needs_one_reference_per_hypothesis():
    with pytest.raises(BrickworkError):
        chrf(["a", "b"], ["a"])
