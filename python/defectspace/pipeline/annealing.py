"""Parallel tempering over placements at fixed composition, deduplicated by exact canonical keys.

Every proposed placement is canonicalized in the C++ core and looked up in a :class:`ClassArchive`
(an exact key set): a class is scored once, however often the chains visit it, and every scored
class stays a candidate for the final ranking, not only the chains' end points. Chains are many
and vectorised: one step proposes a move for every chain at once, scores the new classes in one
batch and accepts by the Metropolis rule at each chain's temperature; neighbouring temperatures
exchange placements every few steps.

Moves keep the composition: a defect hops to a host site of its own sublattice, or two defects of
different kinds on one sublattice swap places.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from defectspace import _core
from defectspace.canonical import Canonicalizer

Scorer = Callable[[NDArray[np.uint8]], NDArray[np.float64]]
"""Scores canonical placements: (n, n_sites) uint8 -> (n, n_outputs) float64."""
Energy = Callable[[NDArray[np.float64]], NDArray[np.float64]]
"""Maps archived scores (n, n_outputs) to energies (n,) to minimise (dimensionless)."""


class _Growable:
    """Rows appended in amortised O(rows): a buffer that doubles, read as a view of its rows."""

    def __init__(self, width: int, dtype: type) -> None:
        self.width, self.dtype = width, dtype
        self.buf: NDArray[Any] = np.zeros((0, width), dtype=dtype)
        self.n = 0

    def append(self, rows: NDArray[Any]) -> None:
        if self.buf.shape[1] != rows.shape[1]:  # first scores fix the width
            self.buf = np.zeros((0, rows.shape[1]), dtype=self.dtype)
        need = self.n + len(rows)
        if need > len(self.buf):
            size = (max(need, 2 * len(self.buf), 1024), self.buf.shape[1])
            grown: NDArray[Any] = np.empty(size, dtype=self.dtype)
            grown[: self.n] = self.buf[: self.n]
            self.buf = grown
        self.buf[self.n : need] = rows
        self.n = need

    def view(self) -> NDArray[Any]:
        return self.buf[: self.n]


class ClassArchive:
    """Every distinct class scored so far: canonical placement, key, orbit size and scores.

    Appends are amortised O(new rows) (the search reads the scores every step: concatenating the
    archive each time made a long search quadratic)."""

    def __init__(self, canonicalizer: Canonicalizer, scorer: Scorer) -> None:
        self.canonicalizer = canonicalizer
        self.scorer = scorer
        self._set = _core.KeySet(canonicalizer.key_bytes)
        self._states = _Growable(canonicalizer.lattice.n_sites, np.uint8)
        self._keys = _Growable(canonicalizer.key_bytes, np.uint8)
        self._orbits = _Growable(1, np.int64)
        self._scores = _Growable(0, np.float64)
        self.n_proposed = 0

    def __len__(self) -> int:
        return self._orbits.n

    def add(self, states: NDArray[np.uint8]) -> NDArray[np.int64]:
        """Class index of every row; new classes are canonicalized and scored, old ones looked up."""
        self.n_proposed += len(states)
        res = self.canonicalizer.canonicalize(states)
        inverse, is_new = self._set.insert(res.keys)
        new = np.flatnonzero(is_new)
        if len(new):
            scores = np.asarray(self.scorer(res.canonical[new]), dtype=np.float64)
            self._states.append(res.canonical[new])
            self._keys.append(res.keys[new])
            self._orbits.append(res.orbit_size[new][:, None])
            self._scores.append(scores.reshape(len(new), -1))
        return np.asarray(inverse, dtype=np.int64)

    def arrays(self) -> tuple[NDArray[np.uint8], NDArray[np.uint8], NDArray[np.int64], NDArray[np.float64]]:
        """(states, keys, orbit sizes, scores) of every archived class, in first-seen order (views:
        copy them to keep them past the next :meth:`add`)."""
        return self._states.view(), self._keys.view(), self._orbits.view()[:, 0], self._scores.view()

    @property
    def scores(self) -> NDArray[np.float64]:
        """(n_classes, n_outputs) scores of every archived class."""
        return self._scores.view()


@dataclass(frozen=True)
class TemperingStats:
    """What one :func:`parallel_tempering` run did."""

    steps: int
    """Steps taken (each proposes one move per chain)."""
    proposals: int
    """Moves proposed (candidates looked up)."""
    new_classes: int
    """Classes scored for the first time in this run."""
    seconds: float
    """Wall time."""
    acceptance: float
    """Share of proposals accepted."""


def _sites_by_type(site_types: NDArray[np.int32]) -> list[NDArray[np.int64]]:
    return [np.flatnonzero(site_types == t) for t in range(int(site_types.max()) + 1)]


def propose(
    states: NDArray[np.uint8],
    defect_sites: NDArray[np.int64],
    site_types: NDArray[np.int32],
    by_type: Sequence[NDArray[np.int64]],
    rng: np.random.Generator,
    swap_fraction: float = 0.3,
) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """One composition-preserving move per row: (new states, their defect sites).

    ``defect_sites`` (n, n_defects) lists each row's defect sites. A hop moves a random defect to a
    random host site of the same sublattice; a swap exchanges two defects of different kinds on one
    sublattice. A row whose drawn move is impossible (target occupied, no such partner) is
    returned unchanged.
    """
    n, k = defect_sites.shape
    rows = np.arange(n)
    out = states.copy()
    sites = defect_sites.copy()
    j = np.asarray(rng.integers(k, size=n), dtype=np.int64)
    src = defect_sites[rows, j]
    src_type = site_types[src]
    code = states[rows, src]
    # swaps
    j2 = rng.integers(k, size=n)
    partner = defect_sites[rows, j2]
    do_swap = (
        (rng.random(n) < swap_fraction) & (site_types[partner] == src_type) & (states[rows, partner] != code)
    )
    sw = np.flatnonzero(do_swap)
    out[sw, src[sw]] = states[sw, partner[sw]]
    out[sw, partner[sw]] = code[sw]
    # hops: a uniformly random site of the sublattice, kept if it holds the host
    hop = np.flatnonzero(~do_swap)
    if len(hop):
        target = np.empty(len(hop), dtype=np.int64)
        for t, members in enumerate(by_type):
            m = np.flatnonzero(src_type[hop] == t)
            if len(m):
                target[m] = members[rng.integers(len(members), size=len(m))]
        free = states[hop, target] == 0
        h = hop[free]
        tgt = target[free]
        out[h, tgt] = code[h]
        out[h, src[h]] = 0
        sites[h, j[h]] = tgt
    return out, sites


def parallel_tempering(
    archive: ClassArchive,
    start: NDArray[np.uint8],
    energy: Energy,
    *,
    temperatures: Sequence[float] = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
    max_steps: int = 1000,
    time_limit: float | None = None,
    swap_every: int = 10,
    seed: int = 0,
    on_step: Callable[[int], None] | None = None,
) -> tuple[NDArray[np.uint8], TemperingStats]:
    """Runs chains from ``start`` (n_chains, n_sites); returns their final states and the stats.

    ``n_chains`` must be a multiple of ``len(temperatures)``: chain ``c`` runs at temperature
    ``temperatures[c % len(temperatures)]``. All rows of ``start`` must have the same number of
    defects (one composition per call keeps the moves vectorised). Stops after ``max_steps`` or
    ``time_limit`` seconds, whichever comes first. Energies are recomputed from the archived
    scores at every step, so an energy function that changes between calls (a corrected
    surrogate) is used as it is now.
    """
    lattice = archive.canonicalizer.lattice
    x = np.ascontiguousarray(start, dtype=np.uint8).copy()
    n = x.shape[0]
    nt = len(temperatures)
    if n % nt:
        raise ValueError(f"{n} chains do not split evenly over {nt} temperatures")
    n_def = (x > 0).sum(axis=1)
    if n and (n_def != n_def[0]).any():
        raise ValueError("every chain must hold the same number of defects")
    if n == 0 or n_def[0] == 0:
        return x, TemperingStats(0, 0, 0, 0.0, 0.0)
    temps = np.tile(np.asarray(temperatures, dtype=np.float64), n // nt)
    rng = np.random.default_rng(seed)
    site_types = lattice.site_types
    by_type = _sites_by_type(site_types)
    defect_sites = np.nonzero(x)[1].reshape(n, int(n_def[0])).astype(np.int64)
    t0 = time.perf_counter()
    before = len(archive)
    cls = archive.add(x)
    e = energy(archive.scores[cls])
    accepted = 0
    proposals = 0
    step = 0
    while step < max_steps and (time_limit is None or time.perf_counter() - t0 < time_limit):
        y, y_sites = propose(x, defect_sites, site_types, by_type, rng)
        y_cls = archive.add(y)
        proposals += n
        scores = archive.scores
        e_new = energy(scores[y_cls])
        e = energy(scores[cls])
        with np.errstate(over="ignore"):
            accept = (e_new <= e) | (rng.random(n) < np.exp(-(e_new - e) / temps))
        x[accept] = y[accept]
        defect_sites[accept] = y_sites[accept]
        cls[accept] = y_cls[accept]
        e[accept] = e_new[accept]
        accepted += int(accept.sum())
        step += 1
        if step % swap_every == 0 and nt > 1:
            # exchange between neighbouring temperatures of each replica group
            grid = np.arange(n).reshape(n // nt, nt)
            for lo in range(step // swap_every % 2, nt - 1, 2):
                a, b = grid[:, lo], grid[:, lo + 1]
                d = (1.0 / temps[a] - 1.0 / temps[b]) * (e[a] - e[b])
                with np.errstate(over="ignore"):
                    ok = (d >= 0) | (rng.random(len(a)) < np.exp(np.minimum(d, 0.0)))
                aa, bb = a[ok], b[ok]
                x[aa], x[bb] = x[bb].copy(), x[aa].copy()
                defect_sites[aa], defect_sites[bb] = defect_sites[bb].copy(), defect_sites[aa].copy()
                cls[aa], cls[bb] = cls[bb].copy(), cls[aa].copy()
                e[aa], e[bb] = e[bb].copy(), e[aa].copy()
        if on_step is not None:
            on_step(n)
    seconds = time.perf_counter() - t0
    return x, TemperingStats(step, proposals, len(archive) - before, seconds, accepted / max(proposals, 1))
