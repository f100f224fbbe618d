"""Placements per second per core of the canonicalizer, printed as tables.

    python benchmarks/canonical_speed.py [--n 200000] [--repeat 3]

Measures, in one run: keys per second on one thread at 3 defects, ~10 % and ~30 % of sites
(8x8 MoS2); the speed-up from both cores; the cost per placement from 4x4 to 16x16 at 3 defects;
the numpy brute force (lexicographic minimum over all 768 images) as the baseline ratio; and the
peak memory while streaming 2 million placements in chunks.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np
from defectspace import Canonicalizer, Lattice
from defectspace.canonical import brute_force_keys


def density_counts(lat: Lattice, fraction: float) -> dict[str, int]:
    """Mixed defect kinds on about ``fraction`` of the sites."""
    nd = max(3, round(fraction * lat.n_sites))
    mo = nd // 4
    return {"Mo->V": mo // 2, "Mo->W": mo - mo // 2, "S->V": (nd - mo) // 2,
            "S->Se": nd - mo - (nd - mo) // 2}


def rate(c: Canonicalizer, x: np.ndarray, repeat: int) -> float:
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        c.keys(x)
        best = min(best, time.perf_counter() - t)
    return len(x) / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    lat = Lattice.preset("MoS2", (8, 8))
    one = Canonicalizer(lat, n_threads=1)
    two = Canonicalizer(lat, n_threads=2)
    print(f"cores: {os.cpu_count()}; group order {one.group.order}; n = {args.n}\n")
    workloads = {"3 defects": {"S->V": 2, "Mo->W": 1}, "~10% of sites": density_counts(lat, 0.10),
                 "~30% of sites": density_counts(lat, 0.30)}
    targets = {"3 defects": 5e6, "~10% of sites": 1e6, "~30% of sites": 2e5}
    print("| 8x8 MoS2 workload | defects | per core (placements/s) | target | 2 threads / 1 | "
          "numpy brute force (placements/s) | speed-up over brute force |")
    print("|---|---|---|---|---|---|---|")
    for name, counts in workloads.items():
        x = one.sample(counts, args.n, seed=1)
        r1 = rate(one, x, args.repeat)
        r2 = rate(two, x, args.repeat)
        nb = 200
        t = time.perf_counter()
        brute_force_keys(lat, x[:nb])
        rb = nb / (time.perf_counter() - t)
        print(f"| {name} | {sum(counts.values())} | {r1:,.0f} | {targets[name]:,.0f} | "
              f"{r2 / r1:.2f} | {rb:,.0f} | {r1 / rb:,.0f}x |")

    print("\n| supercell (3 defects) | sites | dense rows (placements/s/core) | ns each | "
          "defect lists (placements/s/core) | ns each |")
    print("|---|---|---|---|---|---|")
    for n in (4, 6, 8, 12, 16):
        c = Canonicalizer(Lattice.preset("MoS2", (n, n)), n_threads=1)
        x = c.sample({"S->V": 2, "Mo->W": 1}, args.n, seed=2)
        r = rate(c, x, args.repeat)
        rows, sites = np.nonzero(x)
        offsets = np.concatenate([[0], np.cumsum(np.count_nonzero(x, axis=1))])
        codes = x[rows, sites]
        best = np.inf
        for _ in range(args.repeat):
            t = time.perf_counter()
            c.canonicalize_sparse(sites, codes, offsets)
            best = min(best, time.perf_counter() - t)
        rs = len(x) / best
        print(f"| {n}x{n} | {c.lattice.n_sites} | {r:,.0f} | {1e9 / r:.0f} | {rs:,.0f} | "
              f"{1e9 / rs:.0f} |")

    chunk, total = 100_000, 2_000_000
    counts = density_counts(lat, 0.10)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    for i in range(total // chunk):
        two.keys(two.sample(counts, chunk, seed=100 + i))
    dt = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"\nstreaming {total:,} placements (~10%) in chunks of {chunk:,}: {total / dt:,.0f} "
          f"placements/s (sampling included), peak RSS grew by {(peak - base) / 1024:.0f} MiB "
          f"(one chunk of input is {chunk * lat.n_sites / 2**20:.0f} MiB)")


if __name__ == "__main__":
    main()
