"""pytest-benchmark groups: the C++ canonicalizer beside CASM and a plain numpy brute force.

    python -m pytest benchmarks/bench_canonical.py --benchmark-enable
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from defectspace import Canonicalizer, Lattice
from defectspace.canonical import brute_force_keys

pytestmark = pytest.mark.filterwarnings("ignore::pytest_benchmark.logger.PytestBenchmarkWarning")

WORKLOADS = {
    "3-defects": {"S->V": 2, "Mo->W": 1},
    "10pct": {"Mo->V": 2, "Mo->W": 3, "S->V": 7, "S->Se": 7},
    "30pct": {"Mo->V": 7, "Mo->W": 7, "S->V": 22, "S->Se": 22},
}


@functools.cache
def batch(name: str, n: int) -> np.ndarray:
    c = Canonicalizer(Lattice.preset("MoS2", (8, 8)))
    return c.sample(WORKLOADS[name], n, seed=0)


@pytest.mark.parametrize("threads", [1, 0], ids=["one-thread", "all-cores"])
@pytest.mark.parametrize("name", list(WORKLOADS))
def test_cpp(benchmark, name: str, threads: int) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = f"canonicalize-{name}"
    benchmark.extra_info["placements"] = 10_000
    c = Canonicalizer(Lattice.preset("MoS2", (8, 8)), n_threads=threads)
    keys = benchmark(c.keys, batch(name, 10_000))
    assert keys.shape == (10_000, 48)


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_numpy_brute_force(benchmark, name: str) -> None:  # type: ignore[no-untyped-def]
    """Baseline: lexicographic minimum over all 768 images, 100 placements (scale by 100x)."""
    benchmark.group = f"canonicalize-{name}"
    benchmark.extra_info["placements"] = 100
    lat = Lattice.preset("MoS2", (8, 8))
    keys = benchmark.pedantic(brute_force_keys, args=(lat, batch(name, 10_000)[:100]), rounds=3)
    assert len(keys) == 100


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_casm(benchmark, name: str) -> None:  # type: ignore[no-untyped-def]
    """Baseline: CASM's make_canonical_configuration (libcasm-configuration), 300 placements."""
    pytest.importorskip("libcasm.configuration")
    from canonical_speed import CasmCanonicalizer

    benchmark.group = f"canonicalize-{name}"
    benchmark.extra_info["placements"] = 300
    casm = CasmCanonicalizer(Lattice.preset("MoS2", (8, 8)))
    keys = benchmark.pedantic(casm.keys, args=(batch(name, 10_000)[:300],), rounds=3)
    assert len(keys) == 300


def test_enumerate_three_sulfur_vacancies(benchmark) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = "enumerate"
    c = Canonicalizer(Lattice.preset("MoS2", (8, 8)))
    e = benchmark(c.enumerate, {"S->V": 3})
    assert len(e.orbit_size) == 497


def test_pairs_negatives(benchmark) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = "pairs"
    c = Canonicalizer(Lattice.preset("MoS2", (8, 8)))
    x = batch("10pct", 10_000)
    result = benchmark(c.negatives, x, 0)
    assert (result.kind >= 0).all()
