"""chrF is sacrebleu's (the standard implementation), through one shared helper."""

from collections import Counter

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


def test_chrf_is_popovic_formula_when_every_order_occurs():
    # Popović (2015) on corpus counts: mean precision and recall over the 6 character n-gram
    # orders, then F2. sacrebleu averages over the orders present on both sides, so the two agree
    # whenever every order occurs (a sentence of >= 6 non-space characters on each side).
    hypotheses, references = (
        ["Ein Mann fährt Rad.", "Zwei Hunde"],
        ["Ein Mann fährt.", "Zwei Katzen"],
    )
    precision = recall = 0.0
    for n in range(1, 7):
        matches = hypothesis_total = reference_total = 0
        for hyp, ref in zip(hypotheses, references, strict=True):
            h, r = (
                Counter(s[i : i + n] for i in range(len(s) - n + 1))
                for s in (hyp.replace(" ", ""), ref.replace(" ", ""))
            )
            matches += sum((h & r).values())
            hypothesis_total, reference_total = (
                hypothesis_total + h.total(),
                reference_total + r.total(),
            )
        precision, recall = (
            precision + matches / hypothesis_total / 6,
            recall + matches / reference_total / 6,
        )
    expected = 100 * 5 * precision * recall / (4 * precision + recall)
    assert chrf(hypotheses, references) == pytest.approx(expected)
