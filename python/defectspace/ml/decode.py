"""From embeddings back to placements: the class whose embedding is nearest to a given vector.

Where a composition has few classes (at most ``max_classes``), decoding is exact retrieval: every
class is enumerated by the C++ core, embedded once (cached per composition) and the nearest one
returned. Where it has more, a search: parallel tempering over placements of the composition
(:mod:`defectspace.pipeline.annealing`, each class embedded once) on the distance to the vector,
then steepest descent over every single-defect hop until no hop brings the embedding closer.

Without a composition, every class of every composition of up to ``infer_max_defects`` defects
is searched exactly (enumerated and embedded once per decoder); where none lies within
:data:`EXACT_DISTANCE`, compositions are read off the nearest of a few thousand random placements
(the faithful contrastive embedding encodes composition only loosely: their composition is right
for about 65 % of low-density vectors) and each is decoded, the closest result kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray

from defectspace.canonical import Canonicalizer
from defectspace.placement import composition, counts_vector, random_placements

if TYPE_CHECKING:
    from defectspace.ml.embedder import Embedder
    from defectspace.pipeline.annealing import ClassArchive

MAX_RETRIEVAL_CLASSES = 200_000
"""Compositions with at most this many classes are decoded by exact retrieval."""

MAX_LIBRARY_CLASSES = 2_000_000
"""Without a composition, every class of up to ``infer_max_defects`` defects is searched exactly
when there are at most this many (8x8 MoS2, up to 4 defects: 1.16 million)."""

EXACT_DISTANCE = 1e-3
"""A retrieved class this close to the vector is taken as found (equivalent placements embed within
1e-5 of each other; inequivalent ones lie at least 7e-3 apart for the shipped embedder)."""


@dataclass(frozen=True)
class DecodeResult:
    """Decoded placements, one per input vector."""

    states: NDArray[np.uint8]
    """(n, n_sites) uint8 canonical placement whose embedding is nearest to each vector."""
    keys: NDArray[np.uint8]
    """(n, key_bytes) uint8 their canonical keys."""
    distance: NDArray[np.float64]
    """(n,) Euclidean distance between each vector and the embedding of its placement."""
    counts: NDArray[np.int64]
    """(n, n_kinds) composition of each decoded placement."""
    exact: NDArray[np.bool_]
    """(n,) whether the result came from exhaustive retrieval: the nearest class of the given
    composition, or, without one, of every composition up to ``infer_max_defects`` defects."""


class _Decoder:
    def __init__(self, embedder: Embedder, max_classes: int, seed: int, steps: int) -> None:
        self.embedder = embedder
        self.lattice = embedder.lattice
        self.canon = Canonicalizer(self.lattice)
        self.max_classes = max_classes
        self.seed = seed
        self.steps = steps
        self._classes: dict[tuple[int, ...], tuple[NDArray[np.uint8], NDArray[np.float32]] | None] = {}
        self._reference: tuple[NDArray[np.float32], NDArray[np.int64]] | None = None
        self._library: tuple[NDArray[np.uint8], NDArray[np.float32]] | None = None

    def library(self, max_defects: int) -> tuple[NDArray[np.uint8], NDArray[np.float32]] | None:
        """Every class of every composition with 1..max_defects defects, embedded (or None: too many)."""
        if self._library is None:
            import itertools

            from defectspace.pipeline.design import _fits, n_placements

            vecs = []
            for combo in itertools.product(range(max_defects + 1), repeat=self.lattice.n_kinds):
                vec = np.asarray([0, *combo], dtype=np.int64)
                if 0 < sum(combo) <= max_defects and _fits(vec, self.lattice):
                    vecs.append(vec)
            order = self.canon.group.order
            if sum(-(-n_placements(v, self.lattice) // order) for v in vecs) > MAX_LIBRARY_CLASSES:
                return None
            states = [self.canon.enumerate(v[1:]).canonical for v in vecs]
            x = np.concatenate(states)
            self._library = (x, self.embedder.embed(x))
        return self._library

    def classes(self, vec: NDArray[np.int64]) -> tuple[NDArray[np.uint8], NDArray[np.float32]] | None:
        """Every class of a composition with its embedding, or None when there are too many."""
        key = tuple(int(v) for v in vec[1:])
        if key not in self._classes:
            from defectspace.pipeline.design import n_placements

            if -(-n_placements(vec, self.lattice) // self.canon.group.order) > self.max_classes:
                self._classes[key] = None
            else:
                e = self.canon.enumerate(vec[1:])
                self._classes[key] = (e.canonical, self.embedder.embed(e.canonical))
        return self._classes[key]

    def reference(self) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """Embeddings and compositions of random placements, 1 to 30 % of the sites defective."""
        if self._reference is None:
            hi = max(1, int(0.3 * self.lattice.n_sites))
            rng = np.random.default_rng(self.seed)
            parts = [
                random_placements(self.lattice, 4000, (1, 4), rng),
                random_placements(self.lattice, 4000, (1, hi), rng),
            ]
            x = np.concatenate(parts)
            self._reference = (self.embedder.embed(x), composition(x, self.lattice))
        return self._reference

    def candidate_compositions(self, v: NDArray[np.float32], k: int) -> list[NDArray[np.int64]]:
        ref, comp = self.reference()
        d = np.linalg.norm(ref - v[None, :], axis=1)
        out: list[NDArray[np.int64]] = []
        seen: set[tuple[int, ...]] = set()
        for i in np.argsort(d):
            c = comp[i].copy()
            c[0] = 0
            t = tuple(c.tolist())
            if t not in seen:
                seen.add(t)
                out.append(c)
            if len(out) == k:
                break
        return out

    def one(self, v: NDArray[np.float32], vec: NDArray[np.int64]) -> tuple[NDArray[np.uint8], float, bool]:
        found = self.classes(vec)
        if found is not None:
            states, emb = found
            d = np.linalg.norm(emb - v[None, :], axis=1)
            i = int(np.argmin(d))
            return states[i], float(d[i]), True
        return (*self.search(v, vec), False)

    def search(self, v: NDArray[np.float32], vec: NDArray[np.int64]) -> tuple[NDArray[np.uint8], float]:
        from defectspace.pipeline.annealing import ClassArchive, parallel_tempering

        def score(states: NDArray[np.uint8]) -> NDArray[np.float64]:
            e = self.embedder.embed(states).astype(np.float64)
            d: NDArray[np.float64] = np.linalg.norm(e - v[None, :].astype(np.float64), axis=1)
            return d[:, None]

        archive = ClassArchive(self.canon, score)
        start = self.canon.sample(vec[1:], 64, self.seed)
        parallel_tempering(
            archive,
            start,
            lambda s: s[:, 0],
            max_steps=self.steps,
            seed=self.seed,
            temperatures=(1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3),
        )
        states, _, _, scores = archive.arrays()
        return steepest_descent(archive, states[int(np.argmin(scores[:, 0]))])


def steepest_descent(archive: ClassArchive, start: NDArray[np.uint8]) -> tuple[NDArray[np.uint8], float]:
    """From ``start``, the best single-defect hop (a defect to a free site of its sublattice) on the
    archive's first score, while one improves it: the placement reached and its score."""
    i0 = archive.add(start[None])[0]
    best, best_d = start, float(archive.scores[i0, 0])
    types = archive.canonicalizer.lattice.site_types
    while True:
        moves = []
        for s in np.flatnonzero(best):
            for t in np.flatnonzero((types == types[s]) & (best == 0)):
                y = best.copy()
                y[t], y[s] = y[s], 0
                moves.append(y)
        idx = archive.add(np.stack(moves))
        d = archive.scores[idx, 0]
        i = int(np.argmin(d))
        if d[i] >= best_d:
            return best, best_d
        best, best_d = archive.arrays()[0][idx[i]].copy(), float(d[i])


def decode(
    embedder: Embedder,
    vectors: ArrayLike,
    counts: Mapping[str, int] | ArrayLike | None = None,
    *,
    max_classes: int = MAX_RETRIEVAL_CLASSES,
    n_compositions: int = 3,
    infer_max_defects: int = 4,
    steps: int = 300,
    seed: int = 0,
) -> DecodeResult:
    """The placement (canonical form) whose embedding is nearest to each vector.

    Args:
        embedder: the embedder that produced the vectors.
        vectors: (n, dim) embeddings (a single vector is a batch of one).
        counts: the composition: one mapping like ``{"S->V": 3}`` for every vector, an (n, n_kinds)
            array of counts per vector, or None to infer candidates from the embedding.
        max_classes: compositions with at most this many classes are decoded by exact retrieval.
        n_compositions: candidate compositions searched per vector when ``counts`` is None and no
            class of up to ``infer_max_defects`` defects matches.
        infer_max_defects: without ``counts``, every class with at most this many defects is
            searched exactly first (0: skip).
        steps: parallel-tempering steps of the search (64 chains) before the descent.
        seed: seed of the search and of the reference placements.
    """
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim == 1:
        v = v[None, :]
    if v.ndim != 2 or v.shape[1] != embedder.dim:
        raise ValueError(f"vectors must have shape (n, {embedder.dim}), got {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError("vectors hold NaN or infinite values")
    lattice = embedder.lattice
    n = v.shape[0]
    per_row: list[list[NDArray[np.int64]]] | None = None
    if counts is not None:
        if isinstance(counts, Mapping):
            one = counts_vector(counts, lattice)
            per_row = [[one] for _ in range(n)]
        else:
            arr = np.asarray(counts)
            if arr.shape != (n, lattice.n_kinds) or not np.issubdtype(arr.dtype, np.integer):
                raise ValueError(
                    f"counts must be a mapping or an integer ({n}, {lattice.n_kinds}) array, "
                    f"got {arr.dtype} {arr.shape}"
                )
            per_row = [[counts_vector(row, lattice)] for row in arr]
        for options in per_row:
            if options[0][1:].sum() == 0:
                raise ValueError("a composition without defects has a single placement: nothing to decode")
    dec = _Decoder(embedder, max_classes, seed, steps)
    states = np.zeros((n, lattice.n_sites), dtype=np.uint8)
    dist = np.zeros(n)
    exact = np.zeros(n, dtype=bool)
    library = dec.library(infer_max_defects) if per_row is None and infer_max_defects > 0 else None
    for r in range(n):
        best: tuple[NDArray[np.uint8], float, bool] | None = None
        if library is not None:
            d = np.linalg.norm(library[1] - v[r][None, :], axis=1)
            i = int(np.argmin(d))
            best = (library[0][i], float(d[i]), True)
            if best[1] <= EXACT_DISTANCE:
                states[r], dist[r], exact[r] = best
                continue
        options = per_row[r] if per_row is not None else dec.candidate_compositions(v[r], n_compositions)
        for vec in options:
            got = dec.one(v[r], vec)
            if best is None or got[1] < best[1]:
                best = got
        assert best is not None
        states[r], dist[r] = best[0], best[1]
        exact[r] = best[2] and per_row is not None  # an inferred composition is a guess
    canon = dec.canon.canonicalize(states)
    return DecodeResult(canon.canonical, canon.keys, dist, composition(states, lattice)[:, 1:], exact)
