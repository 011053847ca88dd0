"""IMDb movie reviews (Maas et al. 2011) from the user's own copy, and Omnigrok's splits of them.

No package ships the corpus, so it is read from ``--data-dir`` / ``$LANDSCAPE_DATA`` in whichever of
the three common layouts it has (looked for in this order when several are there):

- ``csv``: Kaggle's ``IMDB Dataset.csv`` (columns ``review``, ``sentiment`` = positive/negative),
  the file Omnigrok's script reads. Pool order = file order, as in Omnigrok (``df[:N]``).
- ``aclimdb``: the original ``aclImdb/{train,test}/{neg,pos}/<id>_<rating>.txt`` (``unsup`` is
  ignored); DIR may be the ``aclImdb`` folder itself. Pool order: train/neg, train/pos, test/neg,
  test/pos, each by numeric id, then shuffled as one with ``numpy.random.default_rng(0)``, so the
  first N reviews are a reproducible, class-mixed sample of all 50,000.
- ``npz``: Keras' downloaded ``imdb.npz`` (``x_train``, ``y_train``, ``x_test``, ``y_test``; rows
  are lists of word ranks, 1 = most frequent word; Keras' start/OOV/index_from conventions are
  added by ``load_data``, not stored in the file). Pool order: x_train then x_test, shuffled as for
  aclimdb. With Keras' ``imdb_word_index.json`` next to it, ranks are decoded to words and go
  through the same cleaning as text (the word ``br``, Keras' remnant of ``<br />``, is dropped). Without
  it every rank is a word of its own: the vocabulary is still the training split's most frequent
  ranks, but stop words cannot be recognised and stay in.

A direct path to a ``.csv`` or ``.npz`` file works too. The tokenized corpus (``Reviews``) is cached
on disk (landscape.data.cache), keyed by the files' paths, sizes, mtimes and ctimes and ``CODE_VERSION``.
"""
from __future__ import annotations

import csv
import json
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from landscape.data.cache import cached_arrays
from landscape.data.npz import read_npz
from landscape.data.text import Ragged, encode, ragged, vocabulary, words
from landscape.errors import UserError

LAYOUTS = ("csv", "aclimdb", "npz")  # auto-detection order
CSV_NAME = "IMDB Dataset.csv"
NPZ_NAME = "imdb.npz"
WORD_INDEX = "imdb_word_index.json"
#: Shuffles the aclimdb and npz pools (whose files are sorted by split and class) into one order.
POOL_SEED = 0
#: Bump when tokenization changes: cached corpora of older versions are then ignored.
CODE_VERSION = 1
MISSING = ("the imdb task needs your copy of the IMDb reviews (no package ships them): point --data-dir "
           f"or $LANDSCAPE_DATA at a folder holding one of: the aclImdb folder (aclImdb/{{train,test}}/"
           f"{{pos,neg}}/<id>_<rating>.txt), Keras' {NPZ_NAME}, or Kaggle's '{CSV_NAME}'")
_REVIEW_NAME = re.compile(r"(\d+)_(\d+)\.txt")


@dataclass(frozen=True)
class Reviews:
    """A tokenized corpus in pool order: word ids per review (stop words already removed)."""

    rows: Ragged
    labels: np.ndarray  # int64, 1 = positive
    official_test: np.ndarray | None  # bool per review: from the official test half; None for csv
    id_space: int  # every word id is below this
    source: str


@dataclass(frozen=True)
class Encoded:
    """One split as model inputs: (n, length) token ids (0 = padding) and 0/1 labels."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def find_corpus(data_dir: str | None, layout: str = "auto") -> tuple[str, Path]:
    """The layout and path of the corpus under ``data_dir`` (or ``data_dir`` itself)."""
    if not data_dir:
        raise UserError(MISSING)
    path = Path(data_dir)
    if not path.exists():
        raise UserError(f"--data-dir {path} does not exist ({MISSING})")
    found: dict[str, Path] = {}
    if path.is_file():
        kind = {".csv": "csv", ".npz": "npz"}.get(path.suffix.lower())
        if kind is None:
            raise UserError(f"--data-dir {path}: a data file must be a .csv or .npz ({MISSING})")
        found[kind] = path
    else:
        if (path / CSV_NAME).is_file():
            found["csv"] = path / CSV_NAME
        if (path / "aclImdb").is_dir():
            found["aclimdb"] = path / "aclImdb"
        elif (path / "train").is_dir() or (path / "test").is_dir():
            found["aclimdb"] = path
        if (path / NPZ_NAME).is_file():
            found["npz"] = path / NPZ_NAME
    if layout != "auto":
        if layout not in found:
            raise UserError(f"task_options.layout = {layout!r}, but {path} holds no such corpus ({MISSING})")
        return layout, found[layout]
    for kind in LAYOUTS:
        if kind in found:
            return kind, found[kind]
    raise UserError(f"{MISSING}; found none in {path}")


def load_reviews(data_dir: str | None, layout: str = "auto") -> Reviews:
    """The corpus under ``data_dir``, tokenized; from the disk cache when its files are unchanged."""
    kind, path = find_corpus(data_dir, layout)
    path = path.resolve()
    if kind == "aclimdb":
        sources = [p for p, _, _ in _aclimdb_files(path)]
    else:
        sources = [path] + [p for p in [path.with_name(WORD_INDEX)] if kind == "npz" and p.is_file()]
    key = {"version": CODE_VERSION, "layout": kind, "files": [_stat(p) for p in sources]}
    arrays = cached_arrays("imdb", key, lambda: _READERS[kind](path))
    official = arrays["official_test"]  # empty when the layout has no official split
    return Reviews(
        rows=Ragged(arrays["ids"], arrays["offsets"]),
        labels=arrays["labels"].astype(np.int64),
        official_test=official.astype(bool) if len(official) else None,
        id_space=int(arrays["id_space"]),
        source=str(arrays["source"]),
    )


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and test row indices (each ascending), every class split in proportion.

    As scikit-learn's ``train_test_split(stratify=...)`` sizes it: ceil(test_fraction * n) test rows,
    shared among the classes by largest remainder. Rows are drawn per class with ``seed``.
    """
    n = len(labels)
    n_test = int(np.ceil(test_fraction * n))
    classes, counts = np.unique(labels, return_counts=True)
    ideal = n_test * counts / n
    take = np.floor(ideal).astype(int)
    take[np.argsort(-(ideal - take), kind="stable")[: n_test - take.sum()]] += 1
    rng = np.random.default_rng(seed)
    test = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)])
    is_test = np.zeros(n, dtype=bool)
    is_test[test] = True
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def omnigrok_split(reviews: Reviews, n: int, seed: int, vocab: int, length: int) -> Encoded:
    """Omnigrok's data for size N: the first N reviews, a stratified 75/25 split, the vocabulary of
    the ``vocab`` most frequent words of the training part, sequences padded/cut to ``length``."""
    train, test = stratified_split(reviews.labels[:n], 0.25, seed)
    return _encode(reviews, train, test, vocab, length)


def official_split(reviews: Reviews, n: int, vocab: int, length: int) -> Encoded:
    """The first N reviews of the official training half against the whole official test half
    (``reviews.official_test`` must not be None)."""
    train = np.flatnonzero(~reviews.official_test)[:n]
    return _encode(reviews, train, np.flatnonzero(reviews.official_test), vocab, length)


def _encode(reviews: Reviews, train: np.ndarray, test: np.ndarray, vocab: int, length: int) -> Encoded:
    train_rows = reviews.rows.take(train)
    table = vocabulary(train_rows, vocab, reviews.id_space)
    return Encoded(encode(train_rows, table, length), reviews.labels[train],
                   encode(reviews.rows.take(test), table, length), reviews.labels[test])


# ----------------------------------------------------------------------------- readers


def _stat(path: Path) -> list:
    # The ctime too: a file rewritten to the same size with its mtime set back (os.utime, touch -r,
    # some sync tools) would otherwise be read from the cache as its old contents.
    st = path.stat()
    return [str(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _tokenized(texts: list[str], labels: np.ndarray, official_test: np.ndarray | None,
               source: str) -> dict[str, np.ndarray]:
    """Texts to the cached arrays: word ids numbered by first appearance."""
    index: dict[str, int] = {}
    rows = ragged([[index.setdefault(w, len(index)) for w in words(t)] for t in texts])
    return _arrays(rows, labels, official_test, len(index), source)


def _arrays(rows: Ragged, labels: np.ndarray, official_test: np.ndarray | None, id_space: int,
            source: str) -> dict[str, np.ndarray]:
    if len(rows) == 0:
        raise UserError(f"{source}: no reviews (empty corpus)")
    if rows.ids.size == 0:
        raise UserError(f"{source}: no review has a single word left after cleaning (empty corpus)")
    order = _pool_order(len(rows)) if official_test is not None else np.arange(len(rows))
    pool = rows.take(order)
    return {"ids": pool.ids, "offsets": pool.offsets, "labels": labels[order].astype(np.int8),
            "official_test": np.zeros(0, bool) if official_test is None else official_test[order],
            "id_space": np.array(id_space), "source": np.array(source)}


def _pool_order(n: int) -> np.ndarray:
    return np.random.default_rng(POOL_SEED).permutation(n)


def _aclimdb_files(root: Path) -> list[tuple[Path, int, bool]]:
    """(file, label, official test?) of every labelled review: train/neg, train/pos, test/neg, test/pos."""
    files = []
    for split in ("train", "test"):
        for folder_name, label in (("neg", 0), ("pos", 1)):
            folder = root / split / folder_name
            if not folder.is_dir():
                raise UserError(f"{folder} is missing: an aclImdb folder needs train/ and test/, each with neg/ and pos/")
            found = []
            for entry in os.scandir(folder):
                match = _REVIEW_NAME.fullmatch(entry.name)
                if not match:
                    if entry.name.endswith(".txt"):
                        raise UserError(f"{entry.path}: not an aclImdb review name <id>_<rating>.txt")
                    continue
                rating = int(match[2])
                if not (1 <= rating <= 4 if label == 0 else 7 <= rating <= 10):
                    raise UserError(f"{entry.path}: rating {rating} does not belong in {folder_name}/ "
                                    "(neg holds ratings 1-4, pos 7-10)")
                found.append((int(match[1]), Path(entry.path)))
            if not found:
                raise UserError(f"{folder} holds no <id>_<rating>.txt reviews")
            files += [(path, label, split == "test") for _, path in sorted(found)]
    return files


def _read_aclimdb(root: Path) -> dict[str, np.ndarray]:
    files = _aclimdb_files(root)
    texts = [_read_text(path) for path, _, _ in files]
    labels = np.array([label for _, label, _ in files])
    official_test = np.array([test for _, _, test in files])
    source = (f"aclImdb folder {root} ({int((~official_test).sum())} train + {int(official_test.sum())} "
              "test reviews)")
    return _tokenized(texts, labels, official_test, source)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None


def _read_csv(path: Path) -> dict[str, np.ndarray]:
    texts, labels = [], []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: spreadsheets begin with a BOM
            reader = csv.reader(f)
            header = [h.strip().lower() for h in next(reader, [])]
            if "review" not in header or "sentiment" not in header:
                raise UserError(f"{path}: the header {','.join(header) or '(none)'} lacks the columns review and sentiment")
            text_at, label_at = header.index("review"), header.index("sentiment")
            for row in reader:
                if not row:
                    continue
                if len(row) != len(header):
                    raise UserError(f"{path} line {reader.line_num}: {len(row)} fields, the header has {len(header)}")
                sentiment = row[label_at].strip().lower()
                if sentiment not in ("positive", "negative"):
                    raise UserError(f"{path} line {reader.line_num}: sentiment {row[label_at]!r} is not "
                                    "positive or negative")
                texts.append(row[text_at])
                labels.append(int(sentiment == "positive"))
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    except csv.Error as e:
        raise UserError(f"{path}: not a readable CSV file ({e})") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None
    return _tokenized(texts, np.array(labels, dtype=np.int64), None, f"Kaggle CSV {path} ({len(texts)} reviews)")


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    word_index = path.with_name(WORD_INDEX) if path.with_name(WORD_INDEX).is_file() else None
    # Keras stores the rows as pickled lists: read_npz unpickles only numpy's array globals.
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path}: not a numpy .npz archive")
    arrays = read_npz(path, ("x_train", "y_train", "x_test", "y_test"),
                      "a Keras imdb.npz has x_train, y_train, x_test, y_test")
    halves = [(arrays[f"x_{s}"], arrays[f"y_{s}"]) for s in ("train", "test")]
    ranks, labels, official_test = [], [], []
    for (x, y), test in zip(halves, (False, True)):
        if x.ndim != 1 or y.shape != x.shape:
            raise UserError(f"{path}: x_{'test' if test else 'train'} {x.shape} and its labels {y.shape} do not match")
        if not np.isin(y, (0, 1)).all():
            raise UserError(f"{path}: y_{'test' if test else 'train'} holds labels other than 0 and 1")
        ranks += [_rank_list(path, row) for row in x]
        labels.append(y.astype(np.int64))
        official_test.append(np.full(len(y), test))
    labels, official_test = np.concatenate(labels), np.concatenate(official_test)
    if word_index is None:
        rows = ragged(ranks)
        source = f"Keras {path} (word ranks, no {WORD_INDEX}: stop words kept)"
        return _arrays(rows, labels, official_test, int(rows.ids.max(initial=0)) + 1, source)
    vocab = _read_word_index(word_index)
    texts = [" ".join(vocab.get(r, "") for r in row) for row in ranks]
    source = f"Keras {path} decoded with {word_index.name}"
    return _tokenized(texts, labels, official_test, source)


_READERS = {"csv": _read_csv, "aclimdb": _read_aclimdb, "npz": _read_npz}


def _rank_list(path: Path, row: Iterable) -> list[int]:
    try:
        ranks = [int(r) for r in row]
    except (TypeError, ValueError):
        raise UserError(f"{path}: a review is not a list of integer word ranks") from None
    if ranks and min(ranks) < 0:
        raise UserError(f"{path}: negative word rank {min(ranks)}")
    return ranks


def _read_word_index(path: Path) -> dict[int, str]:
    """Rank -> word, without Keras' ``br`` (its tokenizer's remnant of ``<br />``, which text drops)."""
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(index, dict):
            raise ValueError("not a word -> rank object")
        return {int(rank): word for word, rank in index.items() if word != "br"}
    except (OSError, ValueError, TypeError) as e:
        raise UserError(f"{path}: not a Keras word index (word -> rank JSON): {e}") from None
