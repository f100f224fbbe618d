"""Fixed-length descriptors of defect placements for property regression.

All descriptors take dense placements ``(n, n_sites)`` uint8 (0 = host, ``k`` = defect kind ``k``)
and a :class:`~defectspace.lattice.Lattice`; everything is vectorised numpy but the pair
histogram, which the C++ core counts.

* :func:`coulomb_matrix`: the Coulomb matrix over all sites of the supercell (MoS2 8x8: 192 sites,
  ``192 * 192 = 36864`` numbers, the size used by Ustyuzhanin & Shibaev). Vacancies are sites of
  zero charge, so the matrix keeps its shape for every placement; distances are the plain
  cartesian ones of the cell, or periodic minimum-image ones (``periodic=True``).
* :func:`bag_of_bonds`: the off-diagonal Coulomb terms ``Z_i Z_j / r_ij`` collected in one bag per
  pair of *host sublattices* (metal-metal, metal-chalcogen, chalcogen-chalcogen) and sorted
  (descending) inside each bag. Bag sizes are fixed by the lattice, not by the data:
  ``64*63/2 + 64*128 + 128*127/2 = 2016 + 8192 + 8128 = 18336 = 192*191/2`` for MoS2 8x8 -- every
  site pair once, the size given in the paper. Vacancies contribute zeros.
* :func:`defect_histogram`: counts of each defect kind plus, for every unordered pair of kinds, a
  histogram of defect-defect minimum-image distances over the lattice's exact distance shells, and
  exponentially damped pair sums. Invariant under every lattice symmetry; for energies it is the
  feature vector of a pair cluster expansion.
* :func:`rich_descriptor` (``"rich"``): the histogram, plus two smooth views of it that trees and
  kernels use better than one column per shell: Gaussian-smeared pair-distance distributions per
  kind pair (:func:`smeared_pair_distribution`) and the distances of the nearest pairs of each
  kind pair (:func:`nearest_pair_distances`). Exactly invariant, like the histogram.
* :func:`environment_counts` (with the histogram: ``"env"``): for each defect kind, histograms of
  how many defects of each kind lie within 2.5, 3.3, 4.1 and 5.6 angstrom of its defects -- local
  environments, i.e. many-body terms a pair expansion lacks.
* :func:`polynomial_features`: degree-2 expansion (``1 + d + d(d+1)/2``; 91 for 12 dims).
* :func:`snn_embeddings`: Siamese embeddings (12 dims) from an embedder passed in
  (:class:`PlacementEmbedder`, e.g. :class:`defectspace.ml.embedder.Embedder`).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

from defectspace import _core
from defectspace.lattice import VACANCY, Lattice
from defectspace.placement import as_states

if TYPE_CHECKING:
    import scipy.sparse as sp

DESCRIPTORS = ("cm", "bob", "hist", "rich", "env", "snn", "snn_poly")
"""Names accepted by :func:`compute`."""

EMBEDDING_DESCRIPTORS = ("snn", "snn_poly")
"""The descriptors computed by an embedder (:class:`PlacementEmbedder`)."""

_SHELL_DECIMALS = 3
_DAMPING_LENGTHS = (1.5, 3.0, 6.0)
_SMEAR_GRID = (2.0, 14.0, 41)
"""Grid of the smeared pair-distance distributions: start, stop (angstrom), points."""
_SMEAR_WIDTH = 0.35
"""Gaussian width of the smeared distributions (angstrom)."""
_NEAREST_PAIRS = 3
"""Nearest pairs of each kind pair in :func:`nearest_pair_distances`."""
_ENV_CUTOFFS = (2.5, 3.3, 4.1, 5.6)
"""Radii (angstrom) of the neighbourhoods of :func:`environment_counts`."""
_ENV_MAX = 4
"""Neighbour counts above this share the last bin of :func:`environment_counts`."""


def _atomic_number(symbol: str) -> float:
    if symbol == VACANCY:
        return 0.0
    from ase.data import atomic_numbers

    if symbol not in atomic_numbers:
        raise ValueError(f"unknown element {symbol!r}")
    return float(atomic_numbers[symbol])


def charge_table(lattice: Lattice) -> NDArray[np.float64]:
    """(n_sites, n_kinds + 1) nuclear charge of each site for each code (0 = host; vacancy = 0)."""
    host = np.array([_atomic_number(s) for s in lattice.site_species], dtype=np.float64)
    table = np.zeros((lattice.n_sites, lattice.n_kinds + 1), dtype=np.float64)
    table[:, 0] = host
    for k in lattice.kinds:
        on_host = lattice.site_types == lattice.kind_site_type[k.code - 1]
        table[on_host, k.code] = _atomic_number(k.species)
    return table


def site_charges(states: ArrayLike, lattice: Lattice) -> NDArray[np.float64]:
    """(n, n_sites) nuclear charge of every site (vacancies 0)."""
    x = as_states(states, lattice)
    table = charge_table(lattice)
    return table[np.arange(lattice.n_sites)[None, :], x]


def periodic_distances(lattice: Lattice) -> NDArray[np.float64]:
    """(n_sites, n_sites) minimum-image distances (in-plane periodic, z included), a copy of
    :meth:`Lattice.minimum_image_distances` cached per lattice."""
    return _periodic_distances(lattice).copy()


@functools.lru_cache(maxsize=8)
def _periodic_distances(lattice: Lattice) -> NDArray[np.float64]:
    best = lattice.minimum_image_distances()
    best.setflags(write=False)
    return best


def _distances(lattice: Lattice, periodic: bool) -> NDArray[np.float64]:
    if periodic:
        return _periodic_distances(lattice)
    pos = lattice.positions
    d: NDArray[np.float64] = np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=-1)
    return d


def _inverse_distances(lattice: Lattice, periodic: bool) -> NDArray[np.float64]:
    d = _distances(lattice, periodic)
    inv = np.zeros_like(d)
    off = ~np.eye(lattice.n_sites, dtype=bool)
    if np.any(d[off] <= 1e-8):
        raise ValueError("two sites of the lattice coincide")
    inv[off] = 1.0 / d[off]
    return inv


def coulomb_matrix(
    states: ArrayLike,
    lattice: Lattice,
    periodic: bool = False,
    flatten: bool = True,
    dtype: type[np.floating[Any]] = np.float32,
) -> NDArray[np.floating[Any]]:
    """Coulomb matrices ``M_ii = Z_i^2.4 / 2``, ``M_ij = Z_i Z_j / r_ij`` over all sites.

    Sites keep the lattice's order, so the matrix of a symmetry image is the same matrix with rows
    and columns permuted (exactly, with ``periodic=True``); its spectrum and sorted entries are
    invariant. Returns ``(n, n_sites**2)`` (``flatten``) or ``(n, n_sites, n_sites)``.
    """
    z = site_charges(states, lattice)
    inv = _inverse_distances(lattice, periodic)
    m = z[:, :, None] * z[:, None, :] * inv[None, :, :]
    idx = np.arange(lattice.n_sites)
    m[:, idx, idx] = 0.5 * z**2.4
    out = m.astype(dtype, copy=False)
    return out.reshape(out.shape[0], -1) if flatten else out


def coulomb_matrix_delta(
    states: ArrayLike, lattice: Lattice, periodic: bool = False, chunk: int = 256
) -> sp.csr_matrix:
    """The flattened Coulomb matrices minus the pristine crystal's, as a scipy CSR matrix.

    Only rows and columns of defect sites differ from the pristine matrix, so this holds the same
    information as :func:`coulomb_matrix` (a constant shift) in a few thousand numbers per row.
    """
    import scipy.sparse as sp

    x = as_states(states, lattice)
    base = coulomb_matrix(np.zeros((1, lattice.n_sites), np.uint8), lattice, periodic,
                          dtype=np.float64)[0]
    blocks = []
    for start in range(0, max(x.shape[0], 1), chunk):
        part = coulomb_matrix(x[start:start + chunk], lattice, periodic, dtype=np.float64)
        blocks.append(sp.csr_matrix(part - base[None, :]))
    if not blocks:
        return sp.csr_matrix((0, lattice.n_sites**2))
    return sp.vstack(blocks, format="csr")


@functools.lru_cache(maxsize=8)
def _bag_layout(lattice: Lattice) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Site pairs (i < j) grouped by host-sublattice pair, and the bag boundaries."""
    i, j = np.triu_indices(lattice.n_sites, k=1)
    t = lattice.site_types
    a = np.minimum(t[i], t[j])
    b = np.maximum(t[i], t[j])
    n_types = len(lattice.host_types)
    bag = a * n_types + b
    order = np.argsort(bag, kind="stable")
    bounds = np.searchsorted(bag[order], np.arange(n_types * n_types + 1))
    return i[order].astype(np.int64), j[order].astype(np.int64), np.unique(bounds).astype(np.int64)


def bag_of_bonds(
    states: ArrayLike,
    lattice: Lattice,
    periodic: bool = True,
    dtype: type[np.floating[Any]] = np.float32,
) -> NDArray[np.floating[Any]]:
    """Bag of bonds: ``Z_i Z_j / r_ij`` of every site pair, bagged by host-sublattice pair, sorted.

    ``(n, n_sites * (n_sites - 1) / 2)``: 18336 for MoS2 8x8 (bags 2016, 8192, 8128). With
    ``periodic=True`` (default) it is exactly invariant under every symmetry of the supercell.
    """
    z = site_charges(states, lattice)
    inv = _inverse_distances(lattice, periodic)
    i, j, bounds = _bag_layout(lattice)
    vals = z[:, i] * z[:, j] * inv[i, j][None, :]
    out = np.empty(vals.shape, dtype=dtype)
    for lo, hi in itertools.pairwise(bounds.tolist()):
        out[:, lo:hi] = -np.sort(-vals[:, lo:hi], axis=1)
    return out


@functools.lru_cache(maxsize=8)
def _distance_shells(lattice: Lattice) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Site-pair distances rounded to the shell precision, and the distinct nonzero shells."""
    d = np.round(_periodic_distances(lattice), _SHELL_DECIMALS)
    shells = np.unique(d)
    shells = shells[shells > 0]
    d.setflags(write=False)
    shells.setflags(write=False)
    return d, shells


@functools.lru_cache(maxsize=8)
def _histogram_layout(lattice: Lattice) -> tuple[NDArray[np.int64], int, list[str]]:
    """``feature[k1, k2, shell]`` index table (-1 = impossible) for the pair histograms."""
    d, shells = _distance_shells(lattice)
    t = lattice.site_types
    nk = lattice.n_kinds
    table = -np.ones((nk + 1, nk + 1, len(shells)), dtype=np.int64)
    names = [f"count:{k.label}" for k in lattice.kinds]
    n = nk
    for k1 in range(1, nk + 1):
        for k2 in range(k1, nk + 1):
            t1 = lattice.kind_site_type[k1 - 1]
            t2 = lattice.kind_site_type[k2 - 1]
            seen = np.unique(d[np.ix_(t == t1, t == t2)])
            for s in np.searchsorted(shells, seen[seen > 0]):
                table[k1, k2, s] = table[k2, k1, s] = n
                names.append(f"pair:{lattice.kinds[k1 - 1].label}|{lattice.kinds[k2 - 1].label}"
                             f"@{shells[s]:.3f}")
                n += 1
    for k1 in range(1, nk + 1):
        for k2 in range(k1, nk + 1):
            for ell in _DAMPING_LENGTHS:
                names.append(f"damped:{lattice.kinds[k1 - 1].label}|{lattice.kinds[k2 - 1].label}"
                             f"/{ell}")
    return table, n, names


@functools.lru_cache(maxsize=8)
def _damping_weights(lattice: Lattice) -> NDArray[np.float64]:
    """(n_hist, n_pairs * n_lengths): ``exp(-r_shell / l)`` mapping shell counts to damped sums."""
    table, n_hist, names = _histogram_layout(lattice)
    _, shells = _distance_shells(lattice)
    nk = lattice.n_kinds
    n_damp = len(_DAMPING_LENGTHS)
    w = np.zeros((n_hist, len(names) - n_hist))
    p = 0
    for k1 in range(1, nk + 1):
        for k2 in range(k1, nk + 1):
            for s in range(len(shells)):
                f = table[k1, k2, s]
                if f >= 0:
                    for li, ell in enumerate(_DAMPING_LENGTHS):
                        w[f, p * n_damp + li] = np.exp(-shells[s] / ell)
            p += 1
    w.setflags(write=False)
    return w


@functools.lru_cache(maxsize=8)
def _histogram_tables(lattice: Lattice) -> tuple[NDArray[np.int32], NDArray[np.int32]]:
    """int32 (n_sites, n_sites) shell index of every site pair and (n_codes, n_codes, n_shells)
    feature column of every (code, code, shell), -1 where impossible, for the C++ kernel."""
    table, _, _ = _histogram_layout(lattice)
    d, shells = _distance_shells(lattice)
    shell_of = np.clip(np.searchsorted(shells, d), 0, len(shells) - 1).astype(np.int32)
    feature = np.ascontiguousarray(table, dtype=np.int32)
    shell_of.setflags(write=False)
    feature.setflags(write=False)
    return shell_of, feature


def histogram_feature_names(lattice: Lattice) -> list[str]:
    """Names of the columns of :func:`defect_histogram`."""
    return list(_histogram_layout(lattice)[2])


def defect_histogram(states: ArrayLike, lattice: Lattice, n_threads: int = 0) -> NDArray[np.float64]:
    """Counts of defect kinds, pair-distance histograms per kind pair and damped pair sums.

    Columns: ``n_kinds`` counts; for each unordered kind pair, one column per distance shell that
    the two kinds' sublattices can realise (exact minimum-image distances of the lattice, z
    included, so top/bottom chalcogen pairs are told apart); then ``sum exp(-r / l)`` over the
    pairs of each kind pair for ``l`` in 1.5, 3, 6 angstrom. Invariant under all lattice symmetries.
    Counted in the C++ core with ``n_threads`` threads (0: all cores; the result is the same).
    """
    x = as_states(states, lattice)
    shell_of, feature = _histogram_tables(lattice)
    # kind counts, pair-shell counts and damped sums (in a fixed order per row: bit-identical for
    # symmetry-equivalent rows) in the C++ core, GIL released, all cores
    out: NDArray[np.float64] = _core.defect_pair_histogram(x, shell_of, feature, _damping_weights(lattice),
                                                            n_threads=n_threads)
    return out


def _kind_pairs(lattice: Lattice) -> list[tuple[int, int]]:
    nk = lattice.n_kinds
    return [(k1, k2) for k1 in range(1, nk + 1) for k2 in range(k1, nk + 1)]


@functools.lru_cache(maxsize=8)
def _smearing_weights(lattice: Lattice) -> NDArray[np.float64]:
    """(n_hist, n_kind_pairs * n_grid): shell counts -> Gaussian-smeared pair distributions."""
    table, n_hist, _ = _histogram_layout(lattice)
    _, shells = _distance_shells(lattice)
    grid = np.linspace(*_SMEAR_GRID[:2], int(_SMEAR_GRID[2]))
    pairs = _kind_pairs(lattice)
    w = np.zeros((n_hist, len(pairs) * len(grid)))
    for p, (k1, k2) in enumerate(pairs):
        for s in range(len(shells)):
            f = table[k1, k2, s]
            if f >= 0:
                w[f, p * len(grid):(p + 1) * len(grid)] = np.exp(
                    -0.5 * ((grid - shells[s]) / _SMEAR_WIDTH) ** 2)
    w.setflags(write=False)
    return w


@functools.lru_cache(maxsize=8)
def _nearest_layout(lattice: Lattice) -> list[tuple[NDArray[np.int64], NDArray[np.float64],
                                                     NDArray[np.float64]]]:
    """Per kind pair: its histogram columns by increasing distance, 1/r and |dz|/r of each."""
    table, _, _ = _histogram_layout(lattice)
    d, shells = _distance_shells(lattice)
    z = lattice.positions[:, 2]
    dz = np.abs(z[:, None] - z[None, :])
    t = lattice.site_types
    out = []
    for k1, k2 in _kind_pairs(lattice):
        cols, inv, tilt = [], [], []
        t1, t2 = lattice.kind_site_type[k1 - 1], lattice.kind_site_type[k2 - 1]
        block = (t[:, None] == t1) & (t[None, :] == t2)
        for s in range(len(shells)):
            if table[k1, k2, s] >= 0:
                cols.append(table[k1, k2, s])
                inv.append(1.0 / shells[s])
                tilt.append(float(np.mean(dz[block & (d == shells[s])])) / shells[s])
        out.append((np.asarray(cols, np.int64), np.asarray(inv), np.asarray(tilt)))
    return out


@contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """numpy's BLAS (the ``rich`` descriptor's matrix product) limited to ``n`` threads inside the
    block (0: left alone). Where the caller's own threads or processes own the cores, OpenBLAS's
    threads, one per core, only spin against them (a 1,000,000-placement screen on 2 cores: 48 s
    wall for 41 CPU seconds; a design search: 15,000 candidates per CPU-second, 27,000 on one
    BLAS thread)."""
    try:
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]
    except ImportError:  # no scikit-learn: BLAS keeps its threads
        n = 0
    if n <= 0:
        yield
        return
    with threadpool_limits(limits=n, user_api="blas"):
        yield


def smeared_pair_distribution(hist: ArrayLike, lattice: Lattice) -> NDArray[np.float64]:
    """Pair-distance distributions per kind pair, each pair a Gaussian of width 0.35 angstrom on
    a 2-14 angstrom grid of 41 points (a linear map of :func:`defect_histogram`'s shell counts)."""
    h = np.asarray(hist, dtype=np.float64)
    w = _smearing_weights(lattice)
    out: NDArray[np.float64] = h[:, :w.shape[0]] @ w
    return out


def nearest_pair_distances(hist: ArrayLike, lattice: Lattice,
                           k: int = _NEAREST_PAIRS) -> NDArray[np.float64]:
    """For each kind pair, ``1/r`` and ``|dz|/r`` of its ``k`` nearest defect pairs (0 where fewer
    pairs exist), read off :func:`defect_histogram`'s shell counts: ``(n, n_kind_pairs * k * 2)``."""
    h = np.asarray(hist, dtype=np.float64)
    layout = _nearest_layout(lattice)
    out = np.zeros((h.shape[0], len(layout) * k * 2))
    for p, (cols, inv, tilt) in enumerate(layout):
        if len(cols) == 0:
            continue
        cum = np.cumsum(h[:, cols], axis=1)
        inv_pad = np.append(inv, 0.0)
        tilt_pad = np.append(tilt, 0.0)
        for q in range(k):
            j = (cum < q + 0.5).sum(axis=1)  # index of the shell holding the (q+1)-th nearest pair
            out[:, (p * k + q) * 2] = inv_pad[j]
            out[:, (p * k + q) * 2 + 1] = tilt_pad[j]
    return out


@functools.lru_cache(maxsize=8)
def _neighbourhoods(lattice: Lattice) -> list[Any]:
    """Sparse (n_sites, n_sites) 0/1 matrices: other sites within each radius of a site."""
    import scipy.sparse as sp

    d = _periodic_distances(lattice)
    return [sp.csr_matrix(((d < r) & (d > 1e-9)).astype(np.float64)) for r in _ENV_CUTOFFS]


def environment_names(lattice: Lattice) -> list[str]:
    """Names of the columns of :func:`environment_counts`."""
    labels = [k.label for k in lattice.kinds]
    return [f"env:{a}<-{b}@{r}:{'>=' if m == _ENV_MAX else ''}{m}" for a in labels for b in labels
            for r in _ENV_CUTOFFS for m in range(_ENV_MAX + 1)]


def environment_counts(states: ArrayLike, lattice: Lattice) -> NDArray[np.float64]:
    """Local environments: column ``(k, k2, r, m)`` counts the defects of kind ``k`` that have
    exactly ``m`` (the last bin: at least ``m``) defects of kind ``k2`` within radius ``r`` of them
    (minimum image). ``(n, n_kinds**2 * 4 * 5)``: 320 columns on MoS2. Exactly invariant."""
    import scipy.sparse as sp

    x = as_states(states, lattice)
    n, nk = x.shape[0], lattice.n_kinds
    nr, nb = len(_ENV_CUTOFFS), _ENV_MAX + 1
    out = np.zeros((n, nk * nk * nr * nb))
    rows, sites = np.nonzero(x)
    kinds = x[rows, sites].astype(np.int64) - 1
    for k2 in range(nk):
        ind = sp.csr_matrix((x == k2 + 1).astype(np.float64))
        for ri, adj in enumerate(_neighbourhoods(lattice)):
            m = np.asarray((ind @ adj)[rows, sites]).ravel().astype(np.int64)
            col = ((kinds * nk + k2) * nr + ri) * nb + np.minimum(m, _ENV_MAX)
            np.add.at(out, (rows, col), 1.0)
    return out


def rich_blocks(lattice: Lattice) -> dict[str, tuple[int, int]]:
    """Column ranges of the blocks of :func:`rich_descriptor`: ``hist``, ``smeared``, ``nearest``."""
    n_hist = len(histogram_feature_names(lattice))
    n_sm = _smearing_weights(lattice).shape[1]
    n_near = len(_kind_pairs(lattice)) * _NEAREST_PAIRS * 2
    return {"hist": (0, n_hist), "smeared": (n_hist, n_hist + n_sm),
            "nearest": (n_hist + n_sm, n_hist + n_sm + n_near)}


def rich_descriptor(states: ArrayLike, lattice: Lattice, n_threads: int = 0) -> NDArray[np.float64]:
    """The histogram, its smeared pair distributions and nearest-pair distances, side by side
    (blocks in :func:`rich_blocks`; 684 columns on MoS2)."""
    h = defect_histogram(states, lattice, n_threads)
    return np.hstack([h, smeared_pair_distribution(h, lattice), nearest_pair_distances(h, lattice)])


def polynomial_features(e: ArrayLike, degree: int = 2) -> NDArray[np.float64]:
    """Degree-2 polynomial expansion ``[1, e_i, e_i e_j (i <= j)]``: ``1 + d + d(d+1)/2`` columns."""
    if degree != 2:
        raise ValueError(f"only degree 2 is implemented, got {degree}")
    arr = np.asarray(e, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"expected a (n, d) array, got shape {arr.shape}")
    i, j = np.triu_indices(arr.shape[1])
    return np.hstack([np.ones((arr.shape[0], 1)), arr, arr[:, i] * arr[:, j]])


class PlacementEmbedder(Protocol):
    """What the ``snn`` descriptors need of an embedder (:class:`defectspace.ml.embedder.Embedder`)."""

    @property
    def lattice(self) -> Lattice:
        """The lattice the embedder was trained for."""
        ...

    def embed(self, states: ArrayLike, exact: bool = False) -> NDArray[np.float32]:
        """(n, dim) embeddings of placements (``exact``: of their canonical forms)."""
        ...


def snn_embeddings(states: ArrayLike, lattice: Lattice, embedder: PlacementEmbedder,
                   exact: bool = False) -> NDArray[np.float64]:
    """Siamese-network embeddings of placements, as float64 (refused for another lattice)."""
    x = as_states(states, lattice)
    if not embedder.lattice.same_as(lattice):
        raise ValueError(f"the embedder was trained for {embedder.lattice!r}, not {lattice!r}")
    return np.asarray(embedder.embed(x, exact=exact), dtype=np.float64)


def compute(
    name: str, states: ArrayLike, lattice: Lattice, embedder: PlacementEmbedder | None = None,
    n_threads: int = 0, **kwargs: Any
) -> NDArray[np.floating[Any]]:
    """Descriptor ``name`` (one of :data:`DESCRIPTORS`) of a batch of placements; the ``snn``
    descriptors need an ``embedder``; ``n_threads``: the core's threads for ``hist``."""
    if name in EMBEDDING_DESCRIPTORS and embedder is None:
        raise ValueError(f"descriptor {name!r} needs an embedder (e.g. defectspace.ml.embedder."
                         f"Embedder.load())")
    if name == "cm":
        return coulomb_matrix(states, lattice, **kwargs)
    if name == "bob":
        return bag_of_bonds(states, lattice, **kwargs)
    if name == "hist":
        return defect_histogram(states, lattice, n_threads)
    if name == "rich":
        return rich_descriptor(states, lattice, n_threads)
    if name == "env":
        return np.hstack([defect_histogram(states, lattice, n_threads), environment_counts(states, lattice)])
    if name == "snn" and embedder is not None:
        return snn_embeddings(states, lattice, embedder, **kwargs)
    if name == "snn_poly" and embedder is not None:
        return polynomial_features(snn_embeddings(states, lattice, embedder, **kwargs))
    raise ValueError(f"unknown descriptor {name!r}; known: {', '.join(DESCRIPTORS)}")


def descriptor_size(name: str, lattice: Lattice, embedding_dim: int = 12) -> int:
    """Number of columns of descriptor ``name`` on ``lattice``."""
    n = lattice.n_sites
    sizes = {"cm": n * n, "bob": n * (n - 1) // 2, "hist": len(histogram_feature_names(lattice)),
             "rich": rich_blocks(lattice)["nearest"][1],
             "env": len(histogram_feature_names(lattice)) + len(environment_names(lattice)),
             "snn": embedding_dim, "snn_poly": 1 + embedding_dim + embedding_dim * (embedding_dim + 1) // 2}
    if name not in sizes:
        raise ValueError(f"unknown descriptor {name!r}; known: {', '.join(DESCRIPTORS)}")
    return sizes[name]
