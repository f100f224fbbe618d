"""pytest-benchmark group for the invariant pair-histogram descriptor (the predictors' input).

    python -m pytest benchmarks/bench_descriptors.py --benchmark-enable

``histogram``: 20,000 placements with 3-58 defects, the C++ kernel with 1 and 2 threads against the
vectorised numpy implementation it replaced (kept here as the baseline; same output bits).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from defectspace import _core
from defectspace import descriptors as desc
from defectspace.lattice import Lattice
from defectspace.placement import random_placements

pytestmark = pytest.mark.filterwarnings("ignore::pytest_benchmark.logger.PytestBenchmarkWarning")

LAT = Lattice.preset("MoS2", (8, 8))
N = 20_000


@functools.cache
def batch() -> np.ndarray:
    return random_placements(LAT, N, (3, 58), np.random.default_rng(0))


def numpy_histogram(x: np.ndarray) -> np.ndarray:
    """The numpy implementation of defect_histogram before the C++ kernel (padded pair arrays)."""
    table, n_hist, names = desc._histogram_layout(LAT)
    shell_of, _ = desc._histogram_tables(LAT)
    out = np.zeros((x.shape[0], len(names)))
    for k in range(1, LAT.n_kinds + 1):
        out[:, k - 1] = (x == k).sum(axis=1)
    rows, sites = np.nonzero(x)
    bounds = np.searchsorted(rows, np.arange(x.shape[0] + 1))
    max_def = int(np.diff(bounds).max())
    col = np.arange(rows.size) - bounds[rows]
    s_pad = np.zeros((x.shape[0], max_def), dtype=np.int64)
    c_pad = np.zeros((x.shape[0], max_def), dtype=np.int64)
    s_pad[rows, col] = sites
    c_pad[rows, col] = x[rows, sites]
    a, b = np.triu_indices(max_def, k=1)
    sa, sb, ca, cb = s_pad[:, a], s_pad[:, b], c_pad[:, a], c_pad[:, b]
    valid = (ca > 0) & (cb > 0)
    r_idx = np.broadcast_to(np.arange(x.shape[0])[:, None], sa.shape)[valid]
    np.add.at(out, (r_idx, table[ca[valid], cb[valid], shell_of[sa[valid], sb[valid]]]), 1.0)
    w = desc._damping_weights(LAT)
    damped = np.zeros((x.shape[0], w.shape[1]))
    for f in np.flatnonzero(out[:, :n_hist].any(axis=0)):
        damped += out[:, f, None] * w[f][None, :]
    out[:, n_hist:] = damped
    return out


@pytest.mark.parametrize("impl", ["cpp-1", "cpp-2", "numpy"])
def test_histogram(benchmark, impl: str) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = "histogram"
    benchmark.extra_info["placements"] = N
    x = batch()
    if impl == "numpy":
        out = benchmark(numpy_histogram, x)
    else:
        shell, feature = desc._histogram_tables(LAT)
        w = desc._damping_weights(LAT)
        out = benchmark(_core.defect_pair_histogram, x, shell, feature, w, int(impl[-1]))
    np.testing.assert_array_equal(out, desc.defect_histogram(x, LAT))
