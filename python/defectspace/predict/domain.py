"""The training domain of a predictor, and where a placement falls outside it.

A predictor learned from placements with a certain number of defects, certain amounts of each
defect kind and certain defect pairs (kind, kind, distance shell). A placement is *out of domain*
when any of these is new to it:

* ``count``: its number of defects lies outside the training range;
* ``composition``: it holds more defects of some kind than any training placement did;
* ``pairs``: it holds a defect pair (kinds and distance shell) that no training placement held.

All three are read off the pair-histogram descriptor (:func:`defectspace.descriptors.defect_histogram`),
so the flags are invariant under the lattice's symmetry like the predictions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from defectspace import descriptors as desc
from defectspace.lattice import Lattice

COUNT, COMPOSITION, PAIRS = 1, 2, 4
"""Bits of :meth:`TrainingDomain.flags`."""

REASONS = {COUNT: "defect count outside the training range",
           COMPOSITION: "more defects of a kind than any training placement",
           PAIRS: "a defect pair (kinds and distance) never seen in training"}
"""What each bit of :meth:`TrainingDomain.flags` means."""


@dataclass(frozen=True)
class FlagCounts:
    """How many placements of a batch lie outside a domain, in all and per reason."""

    total: int
    outside: int
    by_reason: tuple[int, int, int]
    """Placements with the :data:`COUNT`, :data:`COMPOSITION`, :data:`PAIRS` bit."""

    def __add__(self, other: FlagCounts) -> FlagCounts:
        return FlagCounts(self.total + other.total, self.outside + other.outside,
                          (self.by_reason[0] + other.by_reason[0], self.by_reason[1] + other.by_reason[1],
                           self.by_reason[2] + other.by_reason[2]))


def flag_counts(flags: ArrayLike) -> FlagCounts:
    """Counts of a batch's :meth:`TrainingDomain.flags`."""
    f = np.asarray(flags, dtype=np.uint8)
    c, m, p = (int(((f & b) > 0).sum()) for b in (COUNT, COMPOSITION, PAIRS))
    return FlagCounts(int(f.size), int((f > 0).sum()), (c, m, p))


@dataclass(frozen=True)
class TrainingDomain:
    """Defect counts, per-kind amounts and defect pairs seen in training."""

    n_defects: tuple[int, int]
    """Smallest and largest number of defects of a training placement."""
    max_count: tuple[int, ...]
    """(n_kinds,) largest number of defects of each kind in a training placement."""
    seen_pairs: NDArray[np.bool_]
    """(n_pair_columns,) whether each pair-shell column of the histogram was ever nonzero."""

    @classmethod
    def from_histogram(cls, hist: ArrayLike, lattice: Lattice) -> TrainingDomain:
        """The domain of training placements given by their histogram descriptor."""
        h = np.asarray(hist, dtype=np.float64)
        nk = lattice.n_kinds
        _, n_hist, _ = desc._histogram_layout(lattice)
        if h.ndim != 2 or h.shape[1] < n_hist or h.shape[0] == 0:
            raise ValueError(f"expected a (n >= 1, >= {n_hist}) histogram, got shape {h.shape}")
        counts = np.rint(h[:, :nk]).astype(np.int64)
        nd = counts.sum(axis=1)
        return cls((int(nd.min()), int(nd.max())), tuple(int(c) for c in counts.max(axis=0)),
                   np.asarray(h[:, nk:n_hist].max(axis=0) > 0))

    def flags(self, hist: ArrayLike) -> NDArray[np.uint8]:
        """(n,) bit mask per placement: :data:`COUNT`, :data:`COMPOSITION`, :data:`PAIRS`."""
        h = np.asarray(hist, dtype=np.float64)
        nk = len(self.max_count)
        n_hist = nk + len(self.seen_pairs)
        if h.ndim != 2 or h.shape[1] < n_hist:
            raise ValueError(f"expected a (n, >= {n_hist}) histogram, got shape {h.shape}")
        counts = np.rint(h[:, :nk]).astype(np.int64)
        nd = counts.sum(axis=1)
        out = np.zeros(h.shape[0], dtype=np.uint8)
        out |= np.where((nd < self.n_defects[0]) | (nd > self.n_defects[1]), COUNT, 0).astype(np.uint8)
        out |= np.where((counts > np.asarray(self.max_count)).any(axis=1), COMPOSITION, 0).astype(np.uint8)
        unseen = (h[:, nk:n_hist][:, ~self.seen_pairs] > 0).any(axis=1)
        out |= np.where(unseen, PAIRS, 0).astype(np.uint8)
        return out

    def describe(self, flags: ArrayLike, target: str = "the model", what: str = "placements") -> str | None:
        """One sentence on how many placements lie outside the domain and why, or None."""
        return self.describe_counts(flag_counts(flags), target, what)

    def describe_counts(self, counts: FlagCounts, target: str = "the model",
                        what: str = "placements") -> str | None:
        """:meth:`describe` from counts gathered in pieces (:func:`flag_counts`, summed), as a
        screen's partitions report them."""
        if counts.outside == 0:
            return None
        why = ", ".join(f"{REASONS[b]}: {n}" for b, n in zip((COUNT, COMPOSITION, PAIRS), counts.by_reason,
                                                             strict=True) if n)
        lo, hi = self.n_defects
        return (f"{counts.outside} of {counts.total} {what} lie outside the training domain of {target} "
                f"(trained on {lo}-{hi} defects; {why}); their predictions extrapolate and carry a "
                f"widened uncertainty")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (:meth:`from_dict` reads it back)."""
        return {"n_defects": list(self.n_defects), "max_count": list(self.max_count),
                "seen_pairs": np.flatnonzero(self.seen_pairs).tolist(),
                "n_pair_columns": len(self.seen_pairs)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainingDomain:
        seen = np.zeros(int(d["n_pair_columns"]), dtype=bool)
        seen[np.asarray(d["seen_pairs"], dtype=np.int64)] = True
        lo, hi = (int(v) for v in d["n_defects"])
        return cls((lo, hi), tuple(int(v) for v in d["max_count"]), seen)
