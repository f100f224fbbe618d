"""``defectspace canonicalize | dedupe | enumerate | sample | export``, and the options and
parsers the other command families share (lattice, input file, defect counts)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from defectspace.symmetry import SUBGROUPS

if TYPE_CHECKING:
    from defectspace.canonical import Canonicalizer
    from defectspace.lattice import Lattice


def add_lattice_args(p: argparse.ArgumentParser, threads: bool = True) -> None:
    """``--lattice``, ``--supercell``, ``--subgroup`` and (with ``threads``) ``--threads``."""
    p.add_argument("--lattice", default="MoS2",
                   help="preset name (MoS2, WSe2, MoSe2, WS2) or a unit-cell CIF (default: MoS2)")
    p.add_argument("--supercell", default="8x8", help="supercell size n1xn2 (default: 8x8)")
    p.add_argument("--subgroup", default="full", choices=list(SUBGROUPS),
                   help="symmetry group for equivalence (default: full)")
    if threads:
        p.add_argument("--threads", type=int, default=0,
                       help="threads for the C++ core (0 = all cores)")


def add_input_args(p: argparse.ArgumentParser) -> None:
    """The input file, ``-o/--output`` and ``--on-error``."""
    p.add_argument("input", help="CSV with columns id,defects (2DMD form), or a CIF, a folder or a "
                                 "tar of CIFs")
    p.add_argument("-o", "--output", required=True, help="output CSV")
    p.add_argument("--on-error", choices=["fail", "skip"], default="fail",
                   help="bad input rows: stop with an error (default) or skip them, listing each "
                        "on stderr with its line")


def lattice_from(spec: str, supercell: str) -> Lattice:
    """The lattice of ``--lattice`` and ``--supercell``; errors name the options."""
    from defectspace.lattice import resolve_lattice

    try:
        return resolve_lattice(spec, supercell)
    except ValueError as exc:
        raise ValueError(f"--lattice {spec} --supercell {supercell}: {exc}") from None


def _canonicalizer(args: argparse.Namespace) -> Canonicalizer:
    from defectspace.canonical import Canonicalizer

    return Canonicalizer(lattice_from(args.lattice, args.supercell), args.subgroup,
                         n_threads=args.threads)


def cmd_canonicalize(args: argparse.Namespace) -> int:
    """Adds canonical_key, orbit_size and canonical_defects to every input row."""
    from defectspace.canonical import key_to_string
    from defectspace.io import read_placements, report_errors, write_csv_atomic
    from defectspace.placement import format_2dmd

    c = _canonicalizer(args)
    table = read_placements(args.input, c.lattice, args.on_error)
    report_errors(table)
    res = c.canonicalize(table.states)
    out = table.extra.copy()
    out["canonical_key"] = key_to_string(res.keys)
    out["orbit_size"] = res.orbit_size
    out["canonical_defects"] = format_2dmd(res.canonical, c.lattice)
    write_csv_atomic(out, args.output)
    print(f"canonicalized {len(out)} placements ({len(table.errors)} skipped) -> {args.output}",
          file=sys.stderr)
    return 0


def cmd_dedupe(args: argparse.Namespace) -> int:
    """One row per distinct class: key, orbit size, count, first id and canonical defects."""
    import pandas as pd

    from defectspace.canonical import key_to_string
    from defectspace.io import read_placements, report_errors, write_csv_atomic
    from defectspace.placement import format_2dmd

    c = _canonicalizer(args)
    table = read_placements(args.input, c.lattice, args.on_error)
    report_errors(table)
    dd = c.dedupe(table.states)
    ids = np.asarray(table.ids, dtype=object)
    out = pd.DataFrame({
        "canonical_key": key_to_string(dd.keys),
        "orbit_size": dd.orbit_size,
        "count": dd.counts,
        "first_id": ids[dd.first_row] if len(ids) else np.array([], dtype=object),
        "canonical_defects": format_2dmd(dd.canonical, c.lattice),
    })
    write_csv_atomic(out, args.output)
    print(f"{len(table.ids)} placements, {len(out)} distinct classes -> {args.output}",
          file=sys.stderr)
    return 0


def parse_counts(text: str) -> dict[str, int]:
    """``'S->V=3,Mo->W=1'`` as ``{"S->V": 3, "Mo->W": 1}`` (the ``--counts`` option)."""
    counts: dict[str, int] = {}
    for item in text.split(","):
        label, sep, value = item.strip().rpartition("=")
        if not sep or not value.strip().isdigit():
            raise ValueError(f"--counts items look like 'S->V=3', got {item.strip()!r}")
        counts[label.strip()] = counts.get(label.strip(), 0) + int(value)
    return counts


def cmd_enumerate(args: argparse.Namespace) -> int:
    """Every distinct placement of a defect multiset, with orbit sizes."""
    import pandas as pd

    from defectspace.canonical import key_to_string
    from defectspace.io import write_csv_atomic
    from defectspace.placement import format_2dmd

    c = _canonicalizer(args)
    t0 = time.perf_counter()
    e = c.enumerate(parse_counts(args.counts))
    dt = time.perf_counter() - t0
    out = pd.DataFrame({
        "id": [f"class{i}" for i in range(len(e.orbit_size))],
        "defects": format_2dmd(e.canonical, c.lattice),
        "canonical_key": key_to_string(c.keys(e.canonical)),
        "orbit_size": e.orbit_size,
    })
    write_csv_atomic(out, args.output)
    print(f"{len(out)} distinct classes covering {int(e.orbit_size.sum())} placements "
          f"in {dt:.3f} s -> {args.output}", file=sys.stderr)
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    """Uniformly random placements of a defect multiset."""
    import pandas as pd

    from defectspace.io import write_csv_atomic
    from defectspace.placement import format_2dmd

    c = _canonicalizer(args)
    if args.n < 0:
        raise ValueError(f"-n must be >= 0, got {args.n}")
    x = c.sample(parse_counts(args.counts), args.n, args.seed)
    out = pd.DataFrame({"id": [f"sample{i}" for i in range(args.n)],
                        "defects": format_2dmd(x, c.lattice)})
    write_csv_atomic(out, args.output)
    print(f"{args.n} placements -> {args.output}", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Writes the unrelaxed structures of chosen placements as CIF files (or one extxyz file)."""
    import ase.io
    import pandas as pd

    from defectspace.io import InputError, atomic_path
    from defectspace.placement import PlacementError, parse_2dmd
    from defectspace.structure import placement_to_atoms

    lattice = lattice_from(args.lattice, args.supercell)
    path = Path(args.input)
    if not path.exists():
        raise InputError(f"input {path} does not exist")
    df = (pd.read_parquet(path, columns=["id", "defects"]) if path.suffix == ".parquet"
          else pd.read_csv(path, dtype={"id": str, "defects": str}, keep_default_na=False))
    if args.ids:
        wanted = [i.strip() for i in args.ids.split(",") if i.strip()]
        missing = sorted(set(wanted) - set(df["id"]))
        if missing:
            raise InputError(f"ids not in {path}: {missing[:5]}")
        df = df.set_index("id").loc[wanted].reset_index()
    if args.limit is not None:
        df = df.head(args.limit)
    try:
        states = parse_2dmd(df["defects"].tolist(), lattice)
    except PlacementError as exc:
        raise InputError(f"{path}: {exc}") from None
    out = Path(args.output)
    if out.suffix == ".extxyz":
        frames = []
        for ident, row in zip(df["id"], states, strict=True):
            atoms = placement_to_atoms(row, lattice)
            atoms.info["id"] = str(ident)
            frames.append(atoms)
        with atomic_path(out) as tmp:
            ase.io.write(tmp, frames, format="extxyz")
    else:
        out.mkdir(parents=True, exist_ok=True)
        for ident, row in zip(df["id"], states, strict=True):
            with atomic_path(out / f"{ident}.cif") as tmp:
                ase.io.write(tmp, placement_to_atoms(row, lattice), format="cif")
    print(f"wrote {len(df)} structures -> {out}", file=sys.stderr)
    return 0


def register(subparsers: Any) -> None:
    """Adds canonicalize, dedupe, enumerate, sample and export to the command line."""
    p = subparsers.add_parser("canonicalize", help="canonical key and orbit size of every placement")
    add_input_args(p)
    add_lattice_args(p)
    p.set_defaults(handler=cmd_canonicalize)

    p = subparsers.add_parser("dedupe", help="one row per symmetry-distinct class, with counts")
    add_input_args(p)
    add_lattice_args(p)
    p.set_defaults(handler=cmd_dedupe)

    p = subparsers.add_parser("enumerate", help="all distinct placements of a defect multiset")
    p.add_argument("--counts", required=True, help="defect multiset, e.g. 'S->V=3' or "
                                                   "'Mo->W=1,S->V=2'")
    p.add_argument("-o", "--output", required=True, help="output CSV")
    add_lattice_args(p)
    p.set_defaults(handler=cmd_enumerate)

    p = subparsers.add_parser("sample", help="uniformly random placements of a defect multiset")
    p.add_argument("--counts", required=True, help="defect multiset, e.g. 'S->V=3'")
    p.add_argument("-n", type=int, required=True, help="number of placements")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("-o", "--output", required=True, help="output CSV")
    add_lattice_args(p)
    p.set_defaults(handler=cmd_sample)

    p = subparsers.add_parser("export", help="write chosen placements as CIF files or one extxyz file")
    p.add_argument("input", help="screening Parquet or CSV with columns id,defects")
    p.add_argument("-o", "--output", required=True,
                   help="folder for CIF files, or a file ending in .extxyz")
    p.add_argument("--ids", help="comma-separated ids to export (default: all rows)")
    p.add_argument("--limit", type=int, help="export at most the first N rows")
    p.add_argument("--lattice", default="MoS2", help="preset or unit-cell CIF (default: MoS2)")
    p.add_argument("--supercell", default="8x8", help="supercell n1xn2 (default: 8x8)")
    p.set_defaults(handler=cmd_export)

