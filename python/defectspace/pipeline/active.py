"""Pool-based search for placements whose property lies in a window, one label at a time.

Where labels are dear (a DFT or engine calculation per placement) and the candidates are a fixed
pool, :func:`search_pool` asks for one label at a time: an ensemble of extremely randomised
trees on the placements' invariant descriptor is refitted after each answer, and the next query is
the unlabelled candidate most likely to lie inside the window under a normal distribution with
the ensemble's mean and spread. (A Gaussian process with RBF or Matern kernels on the same
descriptor was tried first: its uncertainty was over-confident far from the labels and the
probability rule then did worse than the greedy one.) The
strategies ``"greedy"`` (closest predicted mean to the window's centre, no uncertainty) and
``"random"`` (the pool in random order) are the baselines it is measured against
(``benchmarks/design_benchmark.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

STRATEGIES = ("probability", "greedy", "random")
"""Query strategies of :func:`search_pool`."""


@dataclass(frozen=True)
class PoolSearch:
    """What :func:`search_pool` asked and found."""

    queries: NDArray[np.int64]
    """Pool rows queried, in order."""
    labels: NDArray[np.float64]
    """The label of each query."""
    hits: NDArray[np.int64]
    """Query number (1-based) at which each in-window row was found."""

    def queries_to(self, k: int) -> int | None:
        """Queries needed to find ``k`` in-window rows (None if fewer were found)."""
        return int(self.hits[k - 1]) if len(self.hits) >= k else None


def _ensemble_mean_std(
    z_train: NDArray[np.float64], y_train: NDArray[np.float64], z: NDArray[np.float64], seed: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Mean and spread of an extremely-randomised-trees ensemble (the spread is the uncertainty)."""
    from sklearn.ensemble import ExtraTreesRegressor

    model = ExtraTreesRegressor(n_estimators=100, random_state=seed, n_jobs=1).fit(z_train, y_train)
    per_tree = np.stack([t.predict(z) for t in model.estimators_])
    return per_tree.mean(axis=0), per_tree.std(axis=0) + 1e-3


def search_pool(
    features: NDArray[np.float64],
    oracle: Callable[[int], float],
    window: tuple[float, float],
    *,
    strategy: str = "probability",
    n_hits: int = 10,
    max_queries: int | None = None,
    n_initial: int = 5,
    seed: int = 0,
) -> PoolSearch:
    """Queries pool rows one at a time until ``n_hits`` labels lie inside ``window``.

    Args:
        features: (n_pool, n_features) descriptor of the candidates (standardised here).
        oracle: returns the label of a pool row (the expensive calculation).
        window: (low, high) wanted range of the label.
        strategy: ``"probability"``, ``"greedy"`` or ``"random"``.
        n_hits: stop after this many in-window labels.
        max_queries: stop after this many queries (default: the whole pool).
        n_initial: random queries before the first model is fitted.
        seed: seed of the random queries and of the model.
    """
    from scipy.special import ndtr

    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    low, high = window
    if low > high:
        raise ValueError(f"the window is empty: {low} > {high}")
    f = np.asarray(features, dtype=np.float64)
    n = f.shape[0]
    scale = f.std(axis=0)
    keep = scale > 1e-12
    z = (f[:, keep] - f[:, keep].mean(axis=0)) / scale[keep]
    limit = n if max_queries is None else min(int(max_queries), n)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    asked: list[int] = []
    labels: list[float] = []
    hits: list[int] = []
    free = np.ones(n, dtype=bool)
    centre = 0.5 * (low + high)
    while len(asked) < limit and len(hits) < n_hits:
        if strategy == "random" or len(asked) < n_initial:
            nxt = int(next(i for i in order if free[i]))
        else:
            mean, std = _ensemble_mean_std(z[asked], np.asarray(labels), z, seed)
            if strategy == "probability":
                s = np.maximum(std, 1e-9)
                score = ndtr((high - mean) / s) - ndtr((low - mean) / s)
            else:
                score = -np.abs(mean - centre)
            score = np.where(free, score, -np.inf)
            nxt = int(np.argmax(score))
        y = float(oracle(nxt))
        free[nxt] = False
        asked.append(nxt)
        labels.append(y)
        if low <= y <= high:
            hits.append(len(asked))
    return PoolSearch(np.asarray(asked, np.int64), np.asarray(labels), np.asarray(hits, np.int64))
