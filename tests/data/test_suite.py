"""The built-in suite: size, fixed split, references, and prompts too diverse to be trivial."""

import re
from collections import Counter

from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression

from brickwork.data import FUNCTIONALITIES, load_builtin_suite


def test_every_functionality_has_80_prompts_and_both_splits():
    samples = load_builtin_suite()
    counts = Counter((s.functionality, s.split) for s in samples)
    for functionality in FUNCTIONALITIES:
        assert counts[functionality, "train"] + counts[functionality, "test"] >= 80
        assert counts[functionality, "test"] >= 30 and counts[functionality, "train"] >= 50
    assert len({s.id for s in samples}) == len(samples)
    assert all(s.reference and s.reference.strip() for s in samples)


def test_split_is_fixed():
    train, test = load_builtin_suite("train"), load_builtin_suite("test")
    assert {s.id for s in train}.isdisjoint({s.id for s in test})
    assert [s.id for s in load_builtin_suite("test")] == [s.id for s in test]


def test_no_two_prompts_of_a_functionality_share_their_first_four_words():
    for functionality in FUNCTIONALITIES:
        openings = Counter(
            " ".join(re.findall(r"[a-z0-9']+", s.prompt.lower())[:4])
            for s in load_builtin_suite()
            if s.functionality == functionality
        )
        repeated = [o for o, n in openings.items() if n > 1]
        assert not repeated, (functionality, repeated)


def test_no_opening_word_dominates_a_functionality():
    for functionality in FUNCTIONALITIES:
        prompts = [s.prompt for s in load_builtin_suite() if s.functionality == functionality]
        first = Counter(p.split()[0].lower() for p in prompts)
        assert first.most_common(1)[0][1] <= 0.15 * len(prompts), functionality


def test_prompt_lengths_vary():
    lengths = [len(s.prompt.split()) for s in load_builtin_suite()]
    assert min(lengths) <= 8 and max(lengths) >= 60
    assert len(set(lengths)) >= 50


def test_bag_of_words_cannot_classify_the_test_split_perfectly():
    train, test = load_builtin_suite("train"), load_builtin_suite("test")
    vectorizer = CountVectorizer()
    classifier = LogisticRegression(max_iter=2000)
    classifier.fit(
        vectorizer.fit_transform([s.prompt for s in train]), [s.functionality for s in train]
    )
    predicted = classifier.predict(vectorizer.transform([s.prompt for s in test]))
    accuracy = sum(p == s.functionality for p, s in zip(predicted, test, strict=True)) / len(test)
    print(f"bag-of-words test accuracy: {accuracy:.3f}")
    assert accuracy < 1.0
