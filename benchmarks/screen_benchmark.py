"""One million random placements through the whole screening pipeline, in process and on Dask.

    python benchmarks/screen_benchmark.py [--n 1000000] [--mode one|dask]

Mixed defect kinds at low (3 defects) and high (~10 % and ~30 % of sites) density, drawn,
canonicalized, deduped exactly, embedded by the shipped embedder, scored by the shipped
predictors and filtered; prints the time per stage, the wall time against the 5-minute target and
the peak memory (this process; on Dask also the workers' peak from their own reports).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
from defectspace import Lattice
from defectspace.pipeline.screening import ScreenConfig, format_summary, screen
from defectspace.placement import counts_vector

COMPOSITIONS = [
    {"S->V": 2, "Mo->W": 1},
    {"Mo->V": 1, "S->V": 1, "S->Se": 1},
    {"Mo->V": 2, "Mo->W": 3, "S->V": 7, "S->Se": 7},
    {"Mo->V": 7, "Mo->W": 7, "S->V": 22, "S->Se": 22},
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--mode", choices=["one", "dask"], default="one",
                    help="one process, or a Dask LocalCluster of 2 workers (run each mode in its own "
                         "process so that peak memory is per mode)")
    ap.add_argument("--chunk-size", type=int, default=65536)
    args = ap.parse_args()
    lat = Lattice.preset("MoS2", (8, 8))
    comps = tuple(tuple(int(v) for v in counts_vector(c, lat)[1:]) for c in COMPOSITIONS)
    cfg = ScreenConfig(lat.describe(), "random", comps, args.n, seed=0, chunk_size=args.chunk_size,
                       n_partitions=8, ranges=(("homo_lumo_gap", 0.0, 10.0),))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, scheduler in [("one process", None), ("Dask LocalCluster, 2 workers", "local")]:
            if (scheduler is None) != (args.mode == "one"):
                continue
            t = time.perf_counter()
            s = screen(cfg, Path(tmp) / f"{label[:3]}.parquet", scheduler=scheduler, n_workers=2)
            wall = time.perf_counter() - t
            print(f"\n== {label}\n{format_summary(s)}")
            rows.append({"run": label, "placements": s.generated, "distinct": s.distinct,
                         "kept": s.kept, "wall s": round(wall, 1), "target s": 300,
                         "placements/s": round(s.generated / wall),
                         "peak MiB (driver)": round(s.peak_rss_mib),
                         "peak MiB (largest worker)": round(s.worker_peak_rss_mib)})
    print()
    print(pd.DataFrame(rows).to_markdown(index=False))


if __name__ == "__main__":
    main()
