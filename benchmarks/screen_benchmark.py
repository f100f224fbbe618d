"""Random placements through the whole screening pipeline: one process and Dask, 10^6 and 10^7.

    python benchmarks/screen_benchmark.py [--n 1000000 10000000] [--modes one-1 one dask-1 dask-2]

The README's screen: ``--counts 'S->V=2,Mo->W=1' --counts 'Mo->V=7,Mo->W=7,S->V=22,S->Se=22'
--keep 'homo_lumo_gap=0.8:1.2'`` with the shipped predictors (``--mix`` draws the four
compositions of earlier versions of this benchmark instead: 3 defects of two kinds, ~10 % and ~30 %
of the sites). Each run is its own process (so that peak memory is per run) started by this
script, which prints the load average before and after, the summary of every run (wall time per
phase, task time per stage, peak memory of the driver and of the largest Dask worker) and a table:
wall time of the screen and of the whole process (imports included), CPU seconds of the process and
its workers (robust to other jobs on the machine: the work done), and placements per second.

Modes: ``one`` (this process, one thread per core), ``one-1`` (one thread), ``dask-K`` (a Dask
LocalCluster of K single-thread worker processes).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

README = [{"S->V": 2, "Mo->W": 1}, {"Mo->V": 7, "Mo->W": 7, "S->V": 22, "S->Se": 22}]
MIX = [{"S->V": 2, "Mo->W": 1}, {"Mo->V": 1, "S->V": 1, "S->Se": 1},
       {"Mo->V": 2, "Mo->W": 3, "S->V": 7, "S->Se": 7}, {"Mo->V": 7, "Mo->W": 7, "S->V": 22, "S->Se": 22}]
KEEP = ("homo_lumo_gap", 0.8, 1.2)


def run_one(n: int, mode: str, mix: bool, embed: bool, out_dir: str) -> dict[str, object]:
    """One screen in this process; returns its summary as a dict."""
    from defectspace import Lattice
    from defectspace.pipeline.screening import PARTITION_ROWS, ScreenConfig, format_summary, screen
    from defectspace.placement import counts_vector

    lat = Lattice.preset("MoS2", (8, 8))
    comps = tuple(tuple(int(v) for v in counts_vector(c, lat)[1:]) for c in (MIX if mix else README))
    cfg = ScreenConfig(lat.describe(), "random", comps, n, seed=0, chunk_size=65536,
                       n_partitions=max(8, -(-n // PARTITION_ROWS)), ranges=(KEEP,), embed=embed)
    scheduler, workers = (None, 0) if mode == "one" else (None, 1) if mode == "one-1" else \
        ("local", int(mode.split("-")[1]))
    s = screen(cfg, Path(out_dir) / f"{mode}-{n}.parquet", scheduler=scheduler, n_workers=workers)
    print(f"\n== {n:,} placements, {mode}\n{format_summary(s)}", file=sys.stderr, flush=True)
    return {"generated": s.generated, "distinct": s.distinct, "kept": s.kept, "wall": s.wall_seconds,
            "phases": s.phase_seconds, "stages": s.stage_seconds, "driver_mib": s.peak_rss_mib,
            "worker_mib": s.worker_peak_rss_mib, "workers": s.workers,
            "worker_cpu": list(s.worker_cpu_seconds), "driver_cpu": _own_cpu()}


def _own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--modes", nargs="+", default=["one", "dask-2"])
    ap.add_argument("--mix", action="store_true", help="the four compositions of earlier versions")
    ap.add_argument("--embed", action="store_true", help="also embed the kept classes")
    ap.add_argument("--run", nargs=2, metavar=("N", "MODE"), help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.run:
        result = run_one(int(args.run[0]), args.run[1], args.mix, args.embed, args.out)
        print(json.dumps(result))
        return
    rows = []
    print(f"load average before: {os.getloadavg()}, {os.cpu_count()} cores", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.n:
            for mode in args.modes:
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                t = time.perf_counter()
                cmd = [sys.executable, __file__, "--run", str(n), mode, "--out", tmp] + \
                      (["--mix"] if args.mix else []) + (["--embed"] if args.embed else [])
                res = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
                process_wall = time.perf_counter() - t
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
                r = json.loads(res.stdout.strip().splitlines()[-1])
                rows.append((n, mode, r, process_wall, cpu, os.getloadavg()[0]))
                for f in Path(tmp).glob("*.parquet"):
                    f.unlink()
    print(f"\nload average after: {os.getloadavg()}")
    print("\n| placements | mode | distinct | kept | screen wall s | process wall s | CPU s | driver CPU s | "
          "CPU s per worker | placements/s (process wall) | placements per CPU-s | peak MiB driver | "
          "peak MiB largest worker | load avg |")
    print("|---:|:--|---:|---:|---:|---:|---:|---:|:--|---:|---:|---:|---:|---:|")
    for n, mode, r, wall, cpu, load in rows:
        workers = ", ".join(f"{v:.1f}" for v in r["worker_cpu"]) or "-"
        print(f"| {n:,} | {mode} | {r['distinct']:,} | {r['kept']:,} | {r['wall']:.1f} | {wall:.1f} | "
              f"{cpu:.1f} | {r['driver_cpu']:.1f} | {workers} | {n / wall:,.0f} | {n / cpu:,.0f} | "
              f"{r['driver_mib']:.0f} | {r['worker_mib']:.0f} | {load:.1f} |")
    by = {(n, mode): (wall, cpu) for n, mode, _, wall, cpu, _ in rows}
    for n in args.n:
        pairs = [("dask-2", "dask-1", "2 workers over 1"), ("dask-2", "one", "2 workers over one process"),
                 ("one", "one-1", "one process, 2 threads over 1")]
        for a, b, what in pairs:
            if (n, a) in by and (n, b) in by:
                (wa, ca), (wb, cb) = by[n, a], by[n, b]
                print(f"\n{n:,}: {what}: wall speed-up {wb / wa:.2f}x, CPU seconds {ca / cb:.2f}x")
    stages = list(dict.fromkeys(k for row in rows for k in row[2]["stages"]))
    print("\nTask seconds per stage (summed over workers):\n")
    print("| placements | mode | " + " | ".join(stages) + " |")
    print("|---:|:--|" + "---:|" * len(stages))
    for n, mode, r, *_ in rows:
        print(f"| {n:,} | {mode} | " + " | ".join(f"{r['stages'].get(k, 0.0):.2f}" for k in stages) + " |")


if __name__ == "__main__":
    main()
