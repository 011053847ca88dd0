"""Omnigrok's text pipeline (KindXiaoming/Omnigrok imdb/landscape): words, a training-set vocabulary,
left-padded id sequences.

Reviews are held as a ragged corpus of integer word ids (``Ragged``); the vocabulary for a given
training split is then a counting problem in numpy, so a grid builds one per axis value in well
under a second instead of re-tokenizing the reviews.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

#: NLTK's English stop-word list (nltk 3.7, 179 words, as Omnigrok's script spells it out). Written
#: here because nltk's corpora are downloaded at run time, not shipped in its wheel.
STOP_WORDS = frozenset("""
i me my myself we our ours ourselves you you're you've you'll you'd your yours yourself yourselves
he him his himself she she's her hers herself it it's its itself they them their theirs themselves
what which who whom this that that'll these those am is are was were be been being have has had
having do does did doing a an the and but if or because as until while of at by for with about
against between into through during before after above below to from up down in out on off over
under again further then once here there when where why how all any both each few more most other
some such no nor not only own same so than too very s t can will just don don't should should've
now d ll m o re ve y ain aren aren't couldn couldn't didn didn't doesn doesn't hadn hadn't hasn
hasn't haven haven't isn isn't ma mightn mightn't mustn mustn't needn needn't shan shan't shouldn
shouldn't wasn wasn't weren weren't won won't wouldn wouldn't
""".split())

_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
# Omnigrok strips non-word characters and digits inside each whitespace-separated word; doing it on
# the whole text leaves whitespace alone, so it splits into the same words.
_STRIP = re.compile(r"[^\w\s]|\d")


def words(text: str) -> list[str]:
    """The words Omnigrok keeps from a review: lowercased, ``<br />`` tags dropped, non-word
    characters and digits stripped, empty words and stop words removed (checked after stripping)."""
    return [w for w in _STRIP.sub("", _BREAK.sub(" ", text.lower())).split() if w not in STOP_WORDS]


@dataclass(frozen=True)
class Ragged:
    """Rows of integer ids: row i is ``ids[offsets[i]:offsets[i + 1]]``."""

    ids: np.ndarray  # int32
    offsets: np.ndarray  # int64, len(rows) + 1

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def take(self, rows: np.ndarray) -> Ragged:
        """The given rows, in that order."""
        starts, lengths = self.offsets[rows], self.lengths()[rows]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        # position of every output id in self.ids: its row's start plus its place within the row
        within = np.arange(offsets[-1]) - np.repeat(offsets[:-1], lengths)
        return Ragged(self.ids[np.repeat(starts, lengths) + within], offsets)


def ragged(rows: list[list[int]]) -> Ragged:
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    ids = np.fromiter((i for r in rows for i in r), dtype=np.int32, count=int(lengths.sum()))
    return Ragged(ids, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))


def vocabulary(train: Ragged, size: int, id_space: int) -> np.ndarray:
    """Lookup table corpus id -> token id: the ``size`` most frequent ids of ``train`` get 1..size
    by decreasing count, ties in order of first appearance (Omnigrok's stable sort over a Counter);
    every other id maps to 0, which ``encode`` drops."""
    unique, first, counts = np.unique(train.ids, return_index=True, return_counts=True)
    top = unique[np.lexsort((first, -counts))[:size]]
    table = np.zeros(id_space, dtype=np.int32)
    table[top] = np.arange(1, len(top) + 1)
    return table


def encode(rows: Ragged, table: np.ndarray, length: int) -> np.ndarray:
    """(rows, length) token ids: each row's in-vocabulary ids, its first ``length`` of them, right
    aligned after zero padding (Omnigrok's ``padding_``)."""
    token = table[rows.ids]
    keep = token > 0
    row = np.repeat(np.arange(len(rows)), rows.lengths())[keep]
    token = token[keep]
    kept = np.bincount(row, minlength=len(rows))
    place = np.arange(len(token)) - np.repeat(np.cumsum(kept) - kept, kept)  # index within its row
    fits = place < length
    out = np.zeros((len(rows), length), dtype=np.int32)  # torch embeds int32 ids; half of int64's memory
    out[row[fits], (length - np.minimum(kept, length))[row[fits]] + place[fits]] = token[fits]
    return out
