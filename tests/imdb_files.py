"""IMDb-layout corpora written by the tests themselves: a synthetic review generator and writers for
the aclImdb folder, Keras' imdb.npz (+ imdb_word_index.json) and Kaggle's CSV.

The generator is a small bag-of-words model with sentiment-bearing words, so an LSTM can learn
something from it. It is NOT the IMDb corpus. ``python -m tests.imdb_files DIR N`` writes an
N-review ``IMDB Dataset.csv`` into DIR (the measurements in the README were made on N = 50,000).
"""
from __future__ import annotations

import csv
import json
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from landscape.data.imdb import CSV_NAME, NPZ_NAME, POOL_SEED, WORD_INDEX
from landscape.data.text import STOP_WORDS


@dataclass(frozen=True)
class Review:
    text: str
    label: int  # 1 = positive
    rating: int  # aclImdb's 1-4 (negative) or 7-10 (positive)


def _pseudo_words(rng: np.random.Generator, count: int, taken: set[str]) -> list[str]:
    consonants, vowels = "bcdfghjklmnprstvwz", "aeiou"
    out: list[str] = []
    while len(out) < count:
        syllables = rng.integers(2, 4)
        word = "".join(rng.choice(list(consonants)) + rng.choice(list(vowels)) for _ in range(syllables))
        if word not in taken and word not in STOP_WORDS:
            taken.add(word)
            out.append(word)
    return out


def synthetic_reviews(n: int, seed: int = 0, mean_words: float = 230, neutral: int = 5000,
                      sentiment: int = 40, rate: float = 0.04, purity: float = 0.7) -> list[Review]:
    """``n`` reviews: stop words (45% of words), neutral words and, at ``rate``, sentiment words from
    the review's own class pool with probability ``purity`` (else the other's); both kinds Zipf
    distributed, as words are. Text noise the pipeline must strip: capitals, punctuation, ``<br />``
    tags, ratings like ``7/10``. The defaults make a bag-of-words logistic regression on the 1,000-word
    vocabulary about as good as on IMDb: test error 0.22 at N = 1,000 and 0.14 at N = 10,000
    (measured on a 10,000-review draw)."""
    rng = np.random.default_rng(seed)
    taken: set[str] = set()
    pools = [np.array(_pseudo_words(rng, sentiment, taken)) for _ in range(2)]  # negative, positive
    plain = np.array(_pseudo_words(rng, neutral, taken))
    zipf = 1 / np.arange(1, neutral + 1) ** 1.1
    zipf_sentiment = 1 / np.arange(1, sentiment + 1)
    stops = np.array(sorted(w for w in STOP_WORDS if "'" not in w))
    reviews = []
    for _ in range(n):
        label = int(rng.integers(2))
        size = int(np.clip(rng.lognormal(np.log(mean_words) - 0.18, 0.6), 8, 2000))
        kind = rng.random(size)
        pool = np.where(rng.random(size) < purity, label, 1 - label)
        stop_words = rng.choice(stops, size)  # drawn in this order: the corpus of a seed stays the same
        sentiment = np.choose(pool, [rng.choice(p, size, p=zipf_sentiment / zipf_sentiment.sum()) for p in pools])
        plain_words = rng.choice(plain, size, p=zipf / zipf.sum())
        tokens = np.where(kind < 0.45, stop_words, np.where(kind < 0.45 + rate, sentiment, plain_words))
        rating = int(rng.integers(7, 11) if label else rng.integers(1, 5))
        reviews.append(Review(_dress(tokens, rng, rating), label, rating))
    return reviews


def _dress(tokens: np.ndarray, rng: np.random.Generator, rating: int) -> str:
    """Words as a review: sentences, capitals, punctuation, paragraph breaks, a score."""
    words = list(tokens)
    out, start = [], True
    for w in words:
        out.append(w.capitalize() if start else w)
        start = False
        r = rng.random()
        if r < 0.06:
            out[-1] += "."
            start = True
        elif r < 0.08:
            out[-1] += ","
        elif r < 0.085:
            out[-1] += ". <br /><br />"
            start = True
    return " ".join(out) + f" {rating}/10!"


# ----------------------------------------------------------------------------- layouts


def pool_order(n: int) -> np.ndarray:
    """The loader's documented order of the aclimdb and npz pools (train/neg, train/pos, test/neg,
    test/pos by id, shuffled with default_rng(POOL_SEED)), recomputed here to test it."""
    return np.random.default_rng(POOL_SEED).permutation(n)


def by_folder(reviews: list[Review]) -> list[Review]:
    """Reviews in the loader's folder order (neg then pos; ids are list positions)."""
    return [r for r in reviews if r.label == 0] + [r for r in reviews if r.label == 1]


def write_aclimdb(root: Path, train: list[Review], test: list[Review]) -> Path:
    """``root/aclImdb/{train,test}/{neg,pos}/<id>_<rating>.txt``; ids number each folder from 0."""
    for split, reviews in (("train", train), ("test", test)):
        for label, folder in ((0, "neg"), (1, "pos")):
            path = root / "aclImdb" / split / folder
            path.mkdir(parents=True, exist_ok=True)
            for i, r in enumerate(r for r in reviews if r.label == label):
                (path / f"{i}_{r.rating}.txt").write_text(r.text, encoding="utf-8")
    return root


def write_csv(path: Path, reviews: list[Review]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["review", "sentiment"])
        out.writerows([r.text, "positive" if r.label else "negative"] for r in reviews)
    return path


def keras_words(text: str) -> list[str]:
    """Keras' ``text_to_word_sequence``: lowercase, its punctuation filter to spaces, split."""
    return re.sub(r"""[!"#$%&()*+,\-./:;<=>?@\[\\\]^_`{|}~\t\n]""", " ", text.lower()).split()


def write_npz(directory: Path, train: list[Review], test: list[Review], word_index: bool = True) -> Path:
    """``imdb.npz`` of raw word ranks (1 = most frequent word), rows in folder order, as Keras ships it."""
    directory.mkdir(parents=True, exist_ok=True)
    counts = Counter(w for r in train + test for w in keras_words(r.text))
    rank = {w: i + 1 for i, (w, _) in enumerate(counts.most_common())}

    def rows(reviews: list[Review]) -> np.ndarray:
        out = np.empty(len(reviews), dtype=object)
        out[:] = [[rank[w] for w in keras_words(r.text)] for r in reviews]
        return out

    train, test = by_folder(train), by_folder(test)
    np.savez(directory / NPZ_NAME, x_train=rows(train), y_train=np.array([r.label for r in train]),
             x_test=rows(test), y_test=np.array([r.label for r in test]))
    if word_index:
        (directory / WORD_INDEX).write_text(json.dumps(rank))
    return directory / NPZ_NAME


def write_all_layouts(root: Path, train: list[Review], test: list[Review]) -> dict[str, Path]:
    """The same corpus in the three layouts, each in its own folder; the CSV rows in the aclimdb
    pool order, so every layout has the same first N reviews."""
    pool = by_folder(train) + by_folder(test)
    return {
        "aclimdb": write_aclimdb(root / "acl", train, test),
        "npz": write_npz(root / "npz", train, test).parent,
        "csv": write_csv(root / "csv" / CSV_NAME, [pool[i] for i in pool_order(len(pool))]).parent,
    }


if __name__ == "__main__":
    out, count = Path(sys.argv[1]), int(sys.argv[2])
    print(write_csv(out / CSV_NAME, synthetic_reviews(count)))
