"""Query strategies: which unlabelled spectra to ask a person about next.

All strategies share one interface and one streaming scheme, so a pool of millions is scored
in batches with bounded memory: every spectrum gets a *score* (higher = ask sooner), a
:class:`TopK` accumulator keeps the best ``candidates(k)`` rows seen so far, and
:meth:`QueryStrategy.select` picks the final ``k`` among them.  Uncertainty strategies keep
exactly ``k``; the batch-diverse one keeps a larger short-list and spreads the batch over it.

* ``entropy``          −Σ p log p
* ``margin``           1 − (p₁ − p₂), the two most probable classes
* ``least-confidence`` 1 − max p
* ``random``           a seeded random key per spectrum id (same picks however the pool is chunked)
* ``diverse``          entropy short-list (``oversample × k``) clustered by k-means on the
                       network's penultimate-layer embedding; the most uncertain of each cluster
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod

import numpy as np

__all__ = ["QueryStrategy", "STRATEGIES", "get_strategy", "TopK", "entropy", "margin",
           "least_confidence"]

_EPS = 1e-12


def entropy(probs: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(probs, np.float64), _EPS, 1.0)
    return -(p * np.log(p)).sum(axis=1)


def margin(probs: np.ndarray) -> np.ndarray:
    """1 − (p₁ − p₂): 1 when the two best classes tie, 0 when one class is certain."""
    p = np.sort(np.asarray(probs, np.float64), axis=1)
    second = p[:, -2] if p.shape[1] > 1 else 0.0
    return 1.0 - (p[:, -1] - second)


def least_confidence(probs: np.ndarray) -> np.ndarray:
    return 1.0 - np.asarray(probs, np.float64).max(axis=1)


class TopK:
    """Keep the ``k`` highest-scoring rows of a stream (ids, scores, probs, optional features).

    Memory is O(k) whatever the stream length; ties are broken by id so the result does not
    depend on how the stream was chunked.
    """

    def __init__(self, k: int):
        self.k = int(k)
        self.ids = np.zeros(0, np.int64)
        self.scores = np.zeros(0, np.float64)
        self.probs: np.ndarray | None = None
        self.features: np.ndarray | None = None
        self.seen = 0

    def add(self, ids, scores, probs, features=None) -> None:
        ids, scores = np.asarray(ids, np.int64), np.asarray(scores, np.float64)
        self.seen += ids.size
        probs = np.asarray(probs, np.float32)
        if self.probs is None:
            self.probs = np.zeros((0, probs.shape[1]), np.float32)
            if features is not None:
                self.features = np.zeros((0, np.asarray(features).shape[1]), np.float32)
        self.ids = np.concatenate([self.ids, ids])
        self.scores = np.concatenate([self.scores, scores])
        self.probs = np.concatenate([self.probs, probs])
        if self.features is not None:
            self.features = np.concatenate([self.features, np.asarray(features, np.float32)])
        if self.ids.size > 2 * self.k:     # amortised pruning
            self._prune()

    def _prune(self) -> None:
        order = np.lexsort((self.ids, -self.scores))[: self.k]
        self.ids, self.scores, self.probs = self.ids[order], self.scores[order], self.probs[order]
        if self.features is not None:
            self.features = self.features[order]

    def result(self):
        """(ids, scores, probs, features) sorted by decreasing score."""
        if self.probs is None:                 # nothing left to score: the pool is all labelled
            self.probs = np.zeros((0, 0), np.float32)
        self._prune()
        return self.ids, self.scores, self.probs, self.features


class QueryStrategy(ABC):
    """Score rows, keep a short-list while streaming, then choose the batch."""

    name = "base"
    needs_features = False

    def __init__(self, seed: int = 0, **options):
        self.seed = int(seed)
        self.options = options

    @abstractmethod
    def score(self, probs: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Per-row informativeness (higher = ask sooner)."""

    def candidates(self, k: int) -> int:
        """How many top-scoring rows to keep while streaming."""
        return k

    def select(self, ids, scores, probs, features, k: int) -> np.ndarray:
        """Positions (into the short-list) of the ``k`` rows to ask about, best first."""
        return np.arange(min(k, len(ids)))

    # convenience for in-memory use (tests, small pools)
    def query(self, probs: np.ndarray, k: int, ids=None, features=None) -> np.ndarray:
        """Pick ``k`` rows of an in-memory ``probs`` array; returns the chosen ids."""
        ids = np.arange(len(probs)) if ids is None else np.asarray(ids, np.int64)
        top = TopK(self.candidates(k))
        top.add(ids, self.score(probs, ids), probs, features)
        cids, cscores, cprobs, cfeat = top.result()
        return cids[self.select(cids, cscores, cprobs, cfeat, k)]


class Entropy(QueryStrategy):
    name = "entropy"

    def score(self, probs, ids):
        return entropy(probs)


class Margin(QueryStrategy):
    name = "margin"

    def score(self, probs, ids):
        return margin(probs)


class LeastConfidence(QueryStrategy):
    name = "least-confidence"

    def score(self, probs, ids):
        return least_confidence(probs)


def _hash_uniform(ids: np.ndarray, seed: int) -> np.ndarray:
    """A uniform [0, 1) number per (seed, id), independent of batch boundaries."""
    ids = np.asarray(ids, np.uint64)
    key = np.frombuffer(hashlib.blake2b(str(seed).encode(), digest_size=8).digest(), np.uint64)[0]
    x = ids * np.uint64(0x9E3779B97F4A7C15) ^ key          # splitmix64 finaliser
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


class Random(QueryStrategy):
    name = "random"

    def score(self, probs, ids):
        return _hash_uniform(ids, self.seed)


class Diverse(QueryStrategy):
    """Entropy short-list of ``oversample × k`` rows, k-means into ``k`` clusters on the
    embedding, the highest-entropy row of each cluster.  Why: neighbouring uncertain spectra
    are often near-duplicates; one label per cluster teaches the model more per click."""

    name = "diverse"
    needs_features = True

    def __init__(self, seed: int = 0, oversample: int = 10, **options):
        super().__init__(seed, **options)
        self.oversample = int(oversample)

    def score(self, probs, ids):
        return entropy(probs)

    def candidates(self, k):
        return k * self.oversample

    def select(self, ids, scores, probs, features, k):
        n = len(ids)
        if n <= k:
            return np.arange(n)
        from sklearn.cluster import KMeans
        x = features if features is not None else np.log(np.clip(probs, _EPS, 1))
        x = np.asarray(x, np.float64)
        x = (x - x.mean(0)) / (x.std(0) + 1e-9)
        km = KMeans(n_clusters=k, n_init=1, random_state=self.seed).fit(x)
        chosen = []
        for c in range(k):
            members = np.flatnonzero(km.labels_ == c)
            if members.size:
                chosen.append(members[np.argmax(scores[members])])   # short-list is score-sorted
        chosen = np.array(sorted(set(chosen), key=lambda i: -scores[i]), np.int64)
        if chosen.size < k:                  # empty clusters: top up with the best left over
            rest = np.setdiff1d(np.arange(n), chosen)
            chosen = np.concatenate([chosen, rest[: k - chosen.size]])
        return chosen[:k]


STRATEGIES: dict[str, type[QueryStrategy]] = {
    cls.name: cls for cls in (Entropy, Margin, LeastConfidence, Random, Diverse)}


def get_strategy(name: str, seed: int = 0, **options) -> QueryStrategy:
    try:
        return STRATEGIES[name](seed=seed, **options)
    except KeyError:
        raise ValueError(f"unknown query strategy {name!r}; choose from "
                         f"{', '.join(STRATEGIES)}") from None
