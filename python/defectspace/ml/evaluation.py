"""Held-out evaluation of an embedder: fresh pairs from a seed stream disjoint from training's,
equivalence recognition by embedding distance (accuracy, ROC AUC, the largest equivalent and the
smallest inequivalent distance), and the invariance error under random symmetry images."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from defectspace.canonical import Canonicalizer
from defectspace.lattice import Lattice
from defectspace.ml.config import TrainConfig
from defectspace.ml.embedder import Embedder
from defectspace.ml.training import PairStream

EVAL_STREAM = 1_000_003
"""Offset of the evaluation seed stream: evaluation draws never coincide with a training step's."""


@dataclass
class PairMetrics:
    """Equivalence recognition on held-out pairs, threshold chosen on a validation half."""

    n_test_pos: int
    n_test_neg: int
    threshold: float
    accuracy: float
    """Test accuracy of ``distance < threshold`` means equivalent."""
    auc: float
    """Test ROC AUC of the negated distance as the score of equivalence."""
    max_pos: float
    """Largest test distance between equivalent placements."""
    min_neg: float
    """Smallest test distance between inequivalent placements."""
    hard_min_neg: float
    """Smallest test distance to a hard negative (one defect moved)."""

    @property
    def ratio(self) -> float:
        """``max_pos / min_neg``: below 1 iff one threshold separates every test pair."""
        return self.max_pos / self.min_neg if self.min_neg > 0 else float("inf")

    def summary(self) -> dict[str, float]:
        """Plain-number dict (JSON-able)."""
        d = asdict(self)
        d["ratio"] = self.ratio
        return {k: float(v) for k, v in d.items()}


def roc_auc(pos_scores: NDArray[np.float64], neg_scores: NDArray[np.float64]) -> float:
    """Probability that a positive outscores a negative (ties count half)."""
    allv = np.concatenate([pos_scores, neg_scores])
    order = np.argsort(allv, kind="mergesort")
    ranks = np.empty(allv.size, dtype=np.float64)
    sorted_v = allv[order]
    # average ranks of ties
    _, first, counts = np.unique(sorted_v, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1
    ranks[order] = np.repeat(avg, counts)
    n_p, n_n = pos_scores.size, neg_scores.size
    return float((ranks[:n_p].sum() - n_p * (n_p + 1) / 2) / (n_p * n_n))


ROUNDING_DISTANCE = 1e-7
"""Distances below this (float32 rounding of unit-length embeddings) count as this for thresholds."""


def best_threshold(d_pos: NDArray[np.float64], d_neg: NDArray[np.float64]) -> float:
    """Distance threshold maximizing accuracy on (d_pos, d_neg): the geometric midpoint of the
    neighbours it falls between (distances floored at ``ROUNDING_DISTANCE``).

    Equivalent placements sit at float rounding (1e-6) and inequivalent ones spread over decades
    (1e-3 to 1), so the arithmetic midpoint of a gap (half the smallest negative seen) can misplace
    fresh negatives that lie closer, though far above every positive; the midpoint on the log scale
    keeps the same margin in ratio on both sides.
    """
    allv = np.unique(np.concatenate([d_pos, d_neg]))
    lo = np.maximum(allv[:-1], ROUNDING_DISTANCE)
    mids = np.where(allv[1:] > lo, np.sqrt(lo * allv[1:]), (allv[1:] + allv[:-1]) / 2)
    cands = np.concatenate([[allv[0] - 1e-9], mids, [allv[-1] + 1e-9]])
    sp, sn = np.sort(d_pos), np.sort(d_neg)
    correct = np.searchsorted(sp, cands, side="left") + (sn.size - np.searchsorted(sn, cands, side="left"))
    return float(cands[int(np.argmax(correct))])


@dataclass
class HeldOutPairs:
    """Held-out placements: anchors, a symmetry image of each, and an inequivalent one."""

    anchors: NDArray[np.uint8]
    positives: NDArray[np.uint8]
    negatives: NDArray[np.uint8]
    hard: NDArray[np.bool_]


def held_out_pairs(lattice: Lattice, n: int, kind: str, seed: int = 0,
                   config: TrainConfig | None = None) -> HeldOutPairs:
    """Fresh pairs from a seed stream disjoint from training's (``EVAL_STREAM`` offset)."""
    cfg = config or TrainConfig()
    c = Canonicalizer(lattice, n_threads=max(1, cfg.threads))
    stream = PairStream(c, TrainConfig(**{**asdict(cfg), "seed": seed + EVAL_STREAM}))
    pb = stream.batch(0, n, kind)
    neg = c.negatives(pb.anchors, stream._seed(0, 5), hard_fraction=cfg.hard_fraction)
    negatives = c.random_images(neg.negatives, stream._seed(0, 6)).images
    ok = neg.kind >= 0
    return HeldOutPairs(pb.anchors[ok], pb.positives[ok], negatives[ok], neg.kind[ok] == 1)


def pair_distances(embedder: Embedder, pairs: HeldOutPairs, exact: bool = False
                   ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Embedding distances of (anchor, positive) and (anchor, negative) pairs."""
    ea = embedder.embed(pairs.anchors, exact=exact).astype(np.float64)
    ep = embedder.embed(pairs.positives, exact=exact).astype(np.float64)
    en = embedder.embed(pairs.negatives, exact=exact).astype(np.float64)
    return np.linalg.norm(ea - ep, axis=1), np.linalg.norm(ea - en, axis=1)


def evaluate_pairs(embedder: Embedder, n: int, kind: str, seed: int = 0, exact: bool = False,
                   config: TrainConfig | None = None) -> PairMetrics:
    """Accuracy, ROC AUC and the distance ratio on held-out pairs at ``"low"``/``"high"`` density.

    The first half of the pairs chooses the threshold; the second half is the test set.
    """
    pairs = held_out_pairs(embedder.lattice, n, kind, seed, config)
    d_pos, d_neg = pair_distances(embedder, pairs, exact)
    return pair_metrics(d_pos, d_neg, pairs.hard)


def pair_metrics(d_pos: NDArray[np.float64], d_neg: NDArray[np.float64], hard: NDArray[np.bool_],
                 test_keep: NDArray[np.bool_] | None = None) -> PairMetrics:
    """Metrics of pair distances: the first half chooses the threshold, the second half (or the
    rows of it where ``test_keep`` holds, which must leave at least one) is the test set."""
    m = d_pos.size // 2
    thr = best_threshold(d_pos[:m], d_neg[:m])
    tp, tn, th = d_pos[m:], d_neg[m:], hard[m:]
    if test_keep is not None:
        tp, tn, th = tp[test_keep[m:]], tn[test_keep[m:]], th[test_keep[m:]]
    acc = float(((tp < thr).sum() + (tn >= thr).sum()) / (tp.size + tn.size))
    return PairMetrics(int(tp.size), int(tn.size), thr, acc, roc_auc(-tp, -tn), float(tp.max()),
                       float(tn.min()), float(tn[th].min()) if th.any() else float("nan"))


def invariance_error(embedder: Embedder, states: NDArray[np.uint8], seed: int = 0,
                     exact: bool = False) -> dict[str, float]:
    """Distances between embeddings of placements and random symmetry images of them.

    Returns mean and max of ``|e(x) - e(g x)|`` and the median distance between embeddings of
    unrelated placements of the batch (the scale to compare with).
    """
    c = embedder.canonicalizer()
    images = c.random_images(states, seed).images
    e1 = embedder.embed(states, exact=exact).astype(np.float64)
    e2 = embedder.embed(images, exact=exact).astype(np.float64)
    d = np.linalg.norm(e1 - e2, axis=1)
    scale = float(np.median(np.linalg.norm(e1 - np.roll(e1, 1, axis=0), axis=1)))
    return {"mean": float(d.mean()), "max": float(d.max()), "median_unrelated": scale}


def held_out_metrics(embedder: Embedder, config: TrainConfig) -> dict[str, Any]:
    """The metrics a checkpoint records: :func:`evaluate_pairs` on ``config.eval_pairs`` fresh
    pairs at low and at high density, as plain numbers."""
    return {kind: evaluate_pairs(embedder, config.eval_pairs, kind, seed=config.seed,
                                 config=config).summary() for kind in ("low", "high")}
