"""How the per-placement cost of each screening stage grows with supercell size and defect density.

    python benchmarks/scale_benchmark.py [--sizes 4 8 12 16] [--seconds 0.3]

For MoS2 supercells from 4x4 to 16x16 and three densities (3 defects, ~10 % and ~30 % of the sites,
the defect kinds mixed as in canonical_speed.py), one thread each: the canonical keys and orbit
sizes (phase 1 of a screen), decoding keys back to placements and the histogram descriptor (what
every predictor reads; phase 2), and the shipped equivariant embedder (``--embed``; any supercell
of the crystal). Rates are placements per CPU-second of the measuring thread (``time.thread_time``),
so other jobs on the machine count less; the load average is printed beside. Each measurement is
sized from a probe to last about ``--seconds``. The shipped property predictors are trained for 8x8
only: their cost per distinct class is in screen_benchmark.py's results.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from defectspace import Canonicalizer, Lattice
from defectspace.descriptors import defect_histogram

sys.path.insert(0, str(Path(__file__).parent))
from canonical_speed import density_counts


def rate(fn: Callable[[np.ndarray], Any], x: np.ndarray, seconds: float) -> float:
    """Rows per thread CPU-second of ``fn`` on about ``seconds`` worth of rows of ``x`` (best of 2)."""
    probe = x[: min(len(x), 256)]
    c = time.thread_time()
    fn(probe)
    per_row = max((time.thread_time() - c) / len(probe), 1e-8)
    n = int(min(len(x), max(256, seconds / per_row)))
    best = np.inf
    for _ in range(2):
        c = time.thread_time()
        fn(x[:n])
        best = min(best, time.thread_time() - c)
    return n / max(best, 1e-9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[4, 8, 12, 16])
    ap.add_argument("--seconds", type=float, default=0.3)
    ap.add_argument("--embed", action="store_true", help="also the shipped embedder (loads torch)")
    args = ap.parse_args()
    embedder = None
    if args.embed:
        import torch
        from defectspace.ml.embedder import Embedder

        torch.set_num_threads(1)
        embedder = Embedder.load()
    print(f"load average before: {os.getloadavg()}, {os.cpu_count()} cores; placements per thread "
          "CPU-second, one thread\n")
    cols = ["keys + orbits", "decode keys", "histogram"] + (["embed"] if embedder else [])
    print("| supercell | sites | group order | workload | defects | " + " | ".join(cols) + " | load |")
    print("|:--|---:|---:|:--|---:|" + "---:|" * len(cols) + "---:|")
    for k in args.sizes:
        lat = Lattice.preset("MoS2", (k, k))
        canon = Canonicalizer(lat, n_threads=1)
        for name, fraction in (("3 defects", 0.0), ("~10 %", 0.1), ("~30 %", 0.3)):
            counts = density_counts(lat, fraction)
            n = 200_000 if k <= 8 else 50_000
            x = canon.sample(counts, n, seed=k)
            keys = canon.keys_and_orbits(x).keys
            r = [rate(canon.keys_and_orbits, x, args.seconds),
                 rate(canon.from_keys, keys, args.seconds),
                 rate(lambda xx, lat=lat: defect_histogram(xx, lat, 1), x, args.seconds)]
            if embedder is not None:
                r.append(rate(lambda xx, lat=lat: embedder.embed(xx, lattice=lat), x[:20_000], args.seconds))
            print(f"| {k}x{k} | {lat.n_sites} | {canon.group.order} | {name} | {sum(counts.values())} | "
                  + " | ".join(f"{v:,.0f}" for v in r) + f" | {os.getloadavg()[0]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
