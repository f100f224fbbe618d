"""``defectspace bench``: placements per second per core of the canonicalizer on the user's own
lattice, at several defect densities, beside a numpy brute force measured in the same run."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from defectspace.cli.common import add_command, add_output
from defectspace.cli.core import add_lattice_args, lattice_from

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from defectspace.lattice import Lattice


def register(subparsers: Any) -> None:
    """Adds bench to the command line."""
    p = add_command(
        subparsers, "bench", help="placements per second per core of the canonicalizer on your lattice",
        example="defectspace bench --supercell 6x6 --defects 3,30% --seconds 0.2 -o bench.csv",
        description="Placements per second per core of defectspace's canonical keys at several defect "
                    "densities on the given lattice and supercell, beside a numpy brute force (the "
                    "smallest of all symmetry images) on the same placements, whose partition into "
                    "classes is checked equal. Rates are per CPU-second of the measuring thread, so "
                    "other jobs on the machine count little; wall-clock rates on all cores beside.")
    add_lattice_args(p, defects_flag="--lattice-defects")
    p.add_argument("--defects", default="3,10%,30%",
                   help="comma-separated defect counts or percentages of the sites "
                        "(default: 3,10%%,30%%; spread evenly over the lattice's defect kinds)")
    p.add_argument("--seconds", type=float, default=0.5,
                   help="CPU seconds to aim at per measurement (default: 0.5)")
    p.add_argument("--seed", type=int, default=0)
    add_output(p, "-o", "--output", help="also write the table as CSV")
    p.set_defaults(handler=cmd_bench)


def parse_defects(text: str, lattice: Lattice) -> list[tuple[str, int]]:
    """``(label, defect count)`` of each item of ``--defects`` (``3`` or ``10%``)."""
    out = []
    for item in (t.strip() for t in text.split(",")):
        try:
            if item.endswith("%"):
                pct = float(item[:-1])
                if not 0 < pct <= 100:
                    raise ValueError
                k = max(1, round(pct / 100 * lattice.n_sites))
            else:
                k = int(item)
        except ValueError:
            raise ValueError(f"--defects items are counts or percentages such as 3 or 10%, "
                             f"got {item!r}") from None
        if not 1 <= k <= lattice.n_sites:
            raise ValueError(f"--defects {item}: {k} defects on {lattice.n_sites} sites")
        out.append((item, k))
    return out


def _timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """CPU seconds of this thread, wall seconds and the result of one call."""
    c0, w0 = time.thread_time(), time.perf_counter()
    out = fn()
    return time.thread_time() - c0, time.perf_counter() - w0, out


def _rows_for(fn: Callable[[int], Any], probe: int, cap: int, seconds: float) -> int:
    """Rows that ``fn`` gets through in about ``seconds`` of CPU, from a run on ``probe`` rows."""
    cpu, _, _ = _timed(lambda: fn(probe))
    return max(probe, min(cap, int(probe * seconds / max(cpu, 1e-9))))


def _partition(keys: list[bytes]) -> list[int]:
    first: dict[bytes, int] = {}
    return [first.setdefault(k, len(first)) for k in keys]


def defect_counts(lattice: Lattice, k: int) -> dict[str, int]:
    """k defects spread as evenly as the sites allow over the lattice's defect kinds."""
    capacity = {t: int((lattice.site_types == t).sum()) for t in range(len(lattice.host_types))}
    counts = dict.fromkeys((kind.label for kind in lattice.kinds), 0)
    hosts = [lattice.host_types.index(kind.host) for kind in lattice.kinds]
    placed = 0
    while placed < k:
        progressed = False
        for kind, host in zip(lattice.kinds, hosts, strict=True):
            if placed < k and capacity[host] > 0:
                counts[kind.label] += 1
                capacity[host] -= 1
                placed += 1
                progressed = True
        if not progressed:
            raise ValueError(f"{k} defects do not fit the {lattice.n_sites} sites")
    return counts


def _placements(canon: Any, counts: dict[str, int], n: int, seed: int) -> NDArray[np.uint8]:
    """n uniformly random placements in pairs: rows 2i + 1 are symmetry images of rows 2i."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x: NDArray[np.uint8] = canon.sample(counts, n, seed=seed)
    x[1::2] = canon.apply(x[0:n - 1:2], rng.integers(0, canon.group.order, n // 2))
    return x


def _measure(one: Any, many: Any, counts: dict[str, int], subgroup: str, seconds: float,
             seed: int) -> tuple[float, float, float, bool]:
    """Keys per CPU-second on one thread, keys per wall second on ``many``'s threads, brute-force
    keys per CPU-second, and whether the two partitions of the shared rows agree."""
    from defectspace.canonical import brute_force_keys

    lat = one.lattice
    probe = _placements(one, counts, 4096, seed)
    n = _rows_for(lambda m: one.keys(probe[:m]), len(probe), 4_000_000, seconds)
    x = _placements(one, counts, n, seed)
    cpu, _, keys = _timed(lambda: one.keys(x))
    _, wall_all, _ = _timed(lambda: many.keys(x))
    m = _rows_for(lambda m: brute_force_keys(lat, x[:m], subgroup), 16, n, seconds)
    cpu_np, _, brute = _timed(lambda: brute_force_keys(lat, x[:m], subgroup))
    same = _partition([bytes(r) for r in keys[:m]]) == _partition(brute)
    return n / max(cpu, 1e-9), n / max(wall_all, 1e-9), m / max(cpu_np, 1e-9), same


def cmd_bench(args: argparse.Namespace) -> int:
    """Prints the speed table; exit status 1 if the keys and the brute force disagree."""
    from defectspace.canonical import Canonicalizer

    if args.seconds <= 0:
        raise ValueError(f"--seconds must be positive, got {args.seconds}")
    lat = lattice_from(args.lattice, args.supercell, args.lattice_defects)
    densities = parse_defects(args.defects, lat)
    one = Canonicalizer(lat, args.subgroup, n_threads=1)
    many = Canonicalizer(lat, args.subgroup, n_threads=args.threads)
    cores = os.cpu_count() or 1
    n1, n2 = lat.supercell
    print(f"{lat.name} {n1}x{n2}: {lat.n_sites} sites, {one.group.order} symmetry operations "
          f"({args.subgroup}); {cores} cores, load average {os.getloadavg()[0]:.1f}")
    print(f"{'defects':>8} {'% sites':>8} {'keys /s per core':>17} {'keys /s all cores':>18} "
          f"{'numpy /s per core':>18} {'ratio':>8}")
    ok = True
    rows = []
    for _, k in densities:
        rate, rate_all, rate_np, same = _measure(one, many, defect_counts(lat, k), args.subgroup,
                                                 args.seconds, args.seed)
        ok &= same
        rows.append({"lattice": lat.name, "supercell": f"{n1}x{n2}", "subgroup": args.subgroup,
                     "defects": k, "fraction_of_sites": k / lat.n_sites, "keys_per_s_per_core": rate,
                     "keys_per_s_all_cores": rate_all, "numpy_per_s_per_core": rate_np,
                     "ratio": rate / rate_np, "partitions_equal": same})
        print(f"{k:>8} {100 * k / lat.n_sites:>7.1f}% {rate:>17,.0f} {rate_all:>18,.0f} "
              f"{rate_np:>18,.0f} {rate / rate_np:>7,.0f}x" + ("" if same else "  PARTITIONS DIFFER"))
    print(f"(per core: CPU-seconds of one thread; all cores: wall clock with "
          f"{'all' if args.threads == 0 else args.threads} threads; partitions of the first rows checked "
          f"equal to the brute force's)")
    if args.output:
        import pandas as pd

        from defectspace.io import write_csv_atomic

        write_csv_atomic(pd.DataFrame(rows), args.output)
    return 0 if ok else 1
