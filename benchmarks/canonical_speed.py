"""Placements per second per core of the canonicalizer beside CASM and a numpy brute force.

    python benchmarks/canonical_speed.py [--n 200000] [--n-casm 3000] [--n-numpy 300] [--repeat 3]

For each 8x8 MoS2 workload (3 defects, ~10 % and ~30 % of sites) one set of placements is drawn,
half of them symmetry images of the other half so that classes repeat, and on one thread the same
placements go through defectspace's keys (all n), CASM's make_canonical_configuration from
libcasm-configuration (the first n_casm) and the numpy brute force, the lexicographic minimum over
all 768 images (the first n_numpy). The partitions of the shared rows are checked equal before a
rate is printed. Rates are placements per CPU-second of the calling thread (time.thread_time), so
other processes on the machine do not count against them; wall-clock rates are printed beside.
Then: the speed-up from both cores, the cost per placement from 4x4 to 16x16, and peak memory while
streaming 2 million placements.
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from defectspace import Canonicalizer, Lattice
from defectspace.canonical import brute_force_keys

TARGETS = {"3 defects": 6e6, "~10% of sites": 2.5e6, "~30% of sites": 1e6}
"""Per-core targets of issue 16 (placements/s)."""


def density_counts(lat: Lattice, fraction: float) -> dict[str, int]:
    """Mixed defect kinds on about ``fraction`` of the sites."""
    nd = max(3, round(fraction * lat.n_sites))
    mo = nd // 4
    return {"Mo->V": mo // 2, "Mo->W": mo - mo // 2, "S->V": (nd - mo) // 2,
            "S->Se": nd - mo - (nd - mo) // 2}


def placements_with_repeats(c: Canonicalizer, counts: dict[str, int], n: int, seed: int) -> np.ndarray:
    """n placements in pairs: rows 2i and 2i + 1 are a placement and a random symmetry image of it."""
    rng = np.random.default_rng(seed)
    x = c.sample(counts, n, seed=seed)
    x[1::2] = c.apply(x[0:n - 1:2], rng.integers(0, c.group.order, n // 2))
    return x


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """Best thread-CPU and best wall seconds over repeat calls, and the last result."""
    cpu = wall = np.inf
    out = None
    for _ in range(repeat):
        c0, w0 = time.thread_time(), time.perf_counter()
        out = fn()
        cpu = min(cpu, time.thread_time() - c0)
        wall = min(wall, time.perf_counter() - w0)
    return cpu, wall, out


def partition(keys: Sequence[bytes]) -> np.ndarray:
    """Class label of each row, labels in order of first appearance."""
    first: dict[bytes, int] = {}
    return np.array([first.setdefault(k, len(first)) for k in keys])


class CasmCanonicalizer:
    """CASM's canonical configurations of defectspace placements (libcasm-configuration)."""

    def __init__(self, lat: Lattice) -> None:
        import libcasm.configuration as config  # type: ignore[import-untyped]
        import libcasm.xtal as xtal  # type: ignore[import-untyped]

        self._config = config
        occ_dof = [[sp] + [("Va" if k.is_vacancy else k.species) for k in lat.kinds if k.host == sp]
                   for sp in lat.basis_species]
        prim = xtal.Prim(lattice=xtal.Lattice(np.asarray(lat.cell, dtype=float).T.copy()),
                         coordinate_frac=np.asarray(lat.basis, dtype=float).T.copy(), occ_dof=occ_dof)
        self.prim = config.Prim(prim)
        n1, n2 = lat.supercell
        self.supercell = config.Supercell(self.prim, np.diag([n1, n2, 1]).astype(int))
        self.group_order = len(self.supercell.factor_group.elements) * self.supercell.n_unitcells
        conv = self.supercell.site_index_converter
        nb = len(lat.basis_species)
        # our site nb*(i*n2 + j) + L -> CASM's linear site index; our code -> occupant index
        cells = [(s // nb // n2, s // nb % n2) for s in range(lat.n_sites)]
        self.to_casm = np.array([conv.linear_site_index(xtal.IntegralSiteCoordinate(s % nb, [i, j, 0]))
                                 for s, (i, j) in enumerate(cells)])
        self.occupant = np.zeros(lat.n_kinds + 1, dtype=np.int64)
        for k in lat.kinds:
            same_host = [q for q in lat.kinds if q.host == k.host]
            self.occupant[k.code] = 1 + same_host.index(k)
        self._conf = config.Configuration(self.supercell)

    def keys(self, states: np.ndarray) -> list[bytes]:
        out = []
        occ = np.zeros(states.shape[1], dtype=np.int64)
        for row in states:
            occ[self.to_casm] = self.occupant[row]
            self._conf.set_occupation(occ)
            out.append(self._config.make_canonical_configuration(self._conf).occupation.tobytes())
        return out


def casm_or_none(lat: Lattice) -> CasmCanonicalizer | None:
    try:
        return CasmCanonicalizer(lat)
    except ImportError:
        return None


def compare_table(args: argparse.Namespace) -> None:
    lat = Lattice.preset("MoS2", (8, 8))
    one = Canonicalizer(lat, n_threads=1)
    two = Canonicalizer(lat, n_threads=2)
    casm = casm_or_none(lat)
    if casm is None:
        print("CASM: not installed (pip install libcasm-configuration); its columns are left out\n")
    else:
        assert casm.group_order == one.group.order, (casm.group_order, one.group.order)
    workloads = {"3 defects": {"S->V": 2, "Mo->W": 1}, "~10% of sites": density_counts(lat, 0.10),
                 "~30% of sites": density_counts(lat, 0.30)}
    print("| 8x8 MoS2 workload | defects | defectspace (per core) | target | wall | CASM (per core) "
          "| defectspace / CASM | numpy brute force (per core) | defectspace / numpy | 2 threads / 1 "
          "| partitions |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, counts in workloads.items():
        x = placements_with_repeats(one, counts, args.n, seed=1)
        cpu, wall, keys = timed(functools.partial(one.keys, x), args.repeat)
        rate, rate_wall = len(x) / cpu, len(x) / wall
        _, wall2, _ = timed(functools.partial(two.keys, x), args.repeat)
        ds = [k.tobytes() for k in keys]
        nb = min(args.n_numpy, len(x))
        cpu_b, _, brute = timed(functools.partial(brute_force_keys, lat, x[:nb]), 1)
        rate_b = nb / cpu_b
        same = np.array_equal(partition(ds[:nb]), partition(brute))
        n_classes = int(partition(ds[:nb]).max()) + 1
        casm_cells = "| n/a | n/a "
        if casm is not None:
            nc = min(args.n_casm, len(x))
            cpu_c, _, ck = timed(functools.partial(casm.keys, x[:nc]), 1)
            rate_c = nc / cpu_c
            same = same and np.array_equal(partition(ds[:nc]), partition(ck))
            same = same and np.array_equal(partition(ck[:nb]), partition(brute))
            casm_cells = f"| {rate_c:,.0f} | {rate / rate_c:,.0f}x "
        if not same:
            raise SystemExit(f"{name}: the partitions differ between defectspace, CASM and numpy")
        print(f"| {name} | {sum(counts.values())} | {rate:,.0f} | {TARGETS[name]:,.0f} | {rate_wall:,.0f} "
              f"{casm_cells}| {rate_b:,.0f} | {rate / rate_b:,.0f}x | {wall / wall2:.2f} "
              f"| equal ({n_classes} classes in the first {nb}) |")


def supercell_table(args: argparse.Namespace) -> None:
    print("\n| supercell (3 defects) | sites | dense rows (placements/s/core) | ns each | "
          "defect lists (placements/s/core) | ns each |")
    print("|---|---|---|---|---|---|")
    for n in (4, 6, 8, 12, 16):
        c = Canonicalizer(Lattice.preset("MoS2", (n, n)), n_threads=1)
        x = c.sample({"S->V": 2, "Mo->W": 1}, args.n, seed=2)
        cpu, _, _ = timed(functools.partial(c.keys, x), args.repeat)
        rows, sites = np.nonzero(x)
        offsets = np.concatenate([[0], np.cumsum(np.count_nonzero(x, axis=1))])
        codes = x[rows, sites]
        cpu_s, _, _ = timed(functools.partial(c.canonicalize_sparse, sites, codes, offsets), args.repeat)
        r, rs = len(x) / cpu, len(x) / cpu_s
        print(f"| {n}x{n} | {c.lattice.n_sites} | {r:,.0f} | {1e9 / r:.0f} | {rs:,.0f} | {1e9 / rs:.0f} |")


def streaming_memory() -> None:
    lat = Lattice.preset("MoS2", (8, 8))
    two = Canonicalizer(lat, n_threads=2)
    chunk, total = 100_000, 2_000_000
    counts = density_counts(lat, 0.10)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    for i in range(total // chunk):
        two.keys(two.sample(counts, chunk, seed=100 + i))
    dt = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"\nstreaming {total:,} placements (~10%) in chunks of {chunk:,} on 2 threads: {total / dt:,.0f} "
          f"placements/s (sampling included), peak RSS grew by {(peak - base) / 1024:.0f} MiB "
          f"(one chunk of input is {chunk * lat.n_sites / 2**20:.0f} MiB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000, help="placements per workload for defectspace")
    ap.add_argument("--n-casm", type=int, default=3000, help="of those, how many CASM canonicalizes")
    ap.add_argument("--n-numpy", type=int, default=300, help="of those, how many the numpy brute force does")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only-compare", action="store_true", help="print only the comparison table")
    args = ap.parse_args()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"cores: {os.cpu_count()}; load average {load:.1f}; n = {args.n:,}, CASM {args.n_casm:,}, "
          f"numpy {args.n_numpy:,}\n")
    compare_table(args)
    if not args.only_compare:
        supercell_table(args)
        streaming_memory()


if __name__ == "__main__":
    main()
