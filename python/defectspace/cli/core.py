"""``defectspace canonicalize | dedupe | enumerate | sample | export``, and the options and
parsers the other command families share (lattice, input file, defect counts)."""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from defectspace.cli.common import add_command, add_input, add_output
from defectspace.symmetry import SUBGROUPS

if TYPE_CHECKING:
    from defectspace.canonical import Canonicalizer
    from defectspace.lattice import Lattice


def add_lattice_args(p: argparse.ArgumentParser, threads: bool = True,
                     defects_flag: str = "--defects") -> None:
    """``--lattice``, ``--supercell``, ``--defects`` (named ``defects_flag``), ``--subgroup``
    and (with ``threads``) ``--threads``."""
    add_lattice_option(p, defects_flag=defects_flag)
    p.add_argument("--subgroup", default="full", choices=list(SUBGROUPS),
                   help="symmetry group for equivalence (default: full)")
    if threads:
        p.add_argument("--threads", type=int, default=0,
                       help="threads for the C++ core (0 = all cores)")


LATTICE_HELP = ("preset (2H: MoS2, WSe2, MoSe2, WS2; 1T-TiS2 and other 1T-MX2; hBN, graphene, "
                "black-phosphorus, GaSe, InSe) or a unit-cell CIF of a layer")


def add_lattice_option(p: argparse.ArgumentParser, default: str | None = "MoS2",
                       help: str | None = None, defects_flag: str = "--defects") -> None:
    """``--lattice`` (a preset or a unit-cell CIF, checked before the command runs),
    ``--supercell`` and the lattice's defects (``--defects 'B->V,B->C'``, under the flag
    ``defects_flag``, stored as ``args.lattice_defects``)."""
    add_input(p, "--lattice", kind="lattice", default=default,
              help=help or f"{LATTICE_HELP} (default: {default})")
    p.add_argument("--supercell", default="8x8" if default else None,
                   help="supercell size n1xn2 (default: 8x8)" if default else
                        "supercell size n1xn2 (default: the model's)")
    p.add_argument(defects_flag, dest="lattice_defects", default=None, metavar="'H->X,...'",
                   help="the substitutions and vacancies each host may hold, e.g. "
                        "'B->V,B->C,N->V,N->C' (V = vacancy; default: a preset's own, e.g. "
                        "MoS2: Mo->V,Mo->W,S->V,S->Se; for a unit-cell CIF, inferred from "
                        "structure inputs, else a vacancy on every host)")


def add_input_args(p: argparse.ArgumentParser) -> None:
    """The input file, ``-o/--output`` and ``--on-error``."""
    add_input(p, "input", kind="placements",
              help="CSV with columns id,defects (2DMD form), or a CIF, a folder or a tar of CIFs")
    add_output(p, "-o", "--output", required=True, help="output CSV")
    p.add_argument("--on-error", choices=["fail", "skip"], default="fail",
                   help="bad input rows: stop with an error (default) or skip them, listing each "
                        "on stderr with its line")


def lattice_from(spec: str, supercell: str, defects: str | None = None) -> Lattice:
    """The lattice of ``--lattice``, ``--supercell`` and ``--defects``; errors name the options."""
    from defectspace.lattice import resolve_lattice

    try:
        return resolve_lattice(spec, supercell, defects)
    except ValueError as exc:
        given = f" --defects {defects}" if defects is not None else ""
        raise ValueError(f"--lattice {spec} --supercell {supercell}{given}: {exc}") from None


def lattice_of(args: argparse.Namespace, structures: str | Path | None = None) -> Lattice:
    """The lattice of a command's ``--lattice``, ``--supercell`` and ``--defects``.

    With ``structures`` (the command's input, used only when it is a CIF, a folder or a tar of
    CIFs) the structures' defects are read first (:func:`defectspace.structure.defects_found`):
    with no ``--defects`` and a unit-cell CIF lattice they become the lattice's defects (a
    vacancy on every host, plus each substitution found, said on stderr); with ``--defects`` a
    structure that shows a defect it does not list is refused, naming it.
    """
    defects = getattr(args, "lattice_defects", None)
    lattice = lattice_from(args.lattice, args.supercell, defects)
    if structures is None:
        return lattice
    from defectspace.io import is_structure_input
    from defectspace.lattice import preset_name

    path = Path(structures)
    from_cif = preset_name(str(args.lattice)) is None
    if not is_structure_input(path) or (defects is None and not from_cif):
        return lattice  # a preset's own defects: no second pass over the structures
    from defectspace.io import InputError
    from defectspace.structure import defects_found, read_structures

    found: dict[str, dict[str, str]] = {}  # host -> species -> first structure showing it
    try:
        for index, (name, atoms) in enumerate(read_structures(path)):
            try:
                shown = defects_found(atoms, lattice)
            except ValueError as exc:
                raise InputError(f"{path}: structure {index + 1} ({name}): {exc}") from None
            for host, shown_species in shown.items():
                for sp in sorted(shown_species):
                    found.setdefault(host, {}).setdefault(sp, name)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    allowed = {(k.host, k.species) for k in lattice.kinds}
    if defects is not None:
        for host, first_seen in found.items():
            for sp, name in first_seen.items():
                if (host, sp) not in allowed:
                    what = "a vacancy" if sp == "V" else f"{sp} on a {host} site"
                    raise InputError(f"--defects {defects} contradicts the structures: {name} has "
                                     f"{what} ({host}->{sp}), which --defects does not list")
        return lattice
    inferred = {h: [k.species for k in lattice.kinds if k.host == h] for h in lattice.host_types}
    for host in lattice.host_types:
        for sp in sorted(found.get(host, {})):
            if sp not in inferred[host]:
                inferred[host].append(sp)
    from defectspace.lattice import format_defects

    text = format_defects(inferred)
    print(f"--defects inferred from the structures in {path}: {text} (a vacancy on every host, "
          f"plus the substitutions found on each sublattice); give --defects to fix it",
          file=sys.stderr)
    return lattice_from(args.lattice, args.supercell, text)


def _canonicalizer(args: argparse.Namespace) -> Canonicalizer:
    from defectspace.canonical import Canonicalizer

    return Canonicalizer(lattice_of(args, getattr(args, "input", None)), args.subgroup,
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


MAX_SITES = 65535
"""The most sites a supercell can have (the core's site indices are 16-bit)."""


def parse_counts(text: str) -> dict[str, int]:
    """``'S->V=3,Mo->W=1'`` as ``{"S->V": 3, "Mo->W": 1}`` (the ``--counts`` option)."""
    counts: dict[str, int] = {}
    for item in text.split(","):
        label, sep, value = item.strip().rpartition("=")
        if not sep or not value.strip().isdigit():
            raise ValueError(f"--counts items look like 'S->V=3', got {item.strip()!r}")
        if int(value) > MAX_SITES:
            raise ValueError(f"--counts {item.strip()}: more defects than the {MAX_SITES} sites a "
                             "supercell can have")
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


_UNSAFE_FILE_CHARS = re.compile(r"[^A-Za-z0-9._+-]")


def file_stem(ident: str) -> str:
    """The file name (without suffix) an id is exported under: the id itself if it is a safe
    name, else the id with every character outside ``A-Z a-z 0-9 . _ + -`` replaced by ``_``,
    without leading dots (no hidden files, no ``..``), at most 200 characters. A file named by it
    can only land in the output folder."""
    stem = _UNSAFE_FILE_CHARS.sub("_", ident).lstrip(".")[:200]
    return stem or "_"


def _export_names(ids: list[str], lines: list[int], path: Path) -> tuple[list[str], list[str]]:
    """The CIF file name of each id and the renames to report; refuses ids that would share a
    file (the same id twice, or ids equal after :func:`file_stem` or up to case)."""
    names: list[str] = []
    renamed: list[str] = []
    owner: dict[str, tuple[str, int]] = {}
    for ident, line in zip(ids, lines, strict=True):
        if not ident:
            raise ValueError(f"{path}, line {line}: empty id; export names each file after its id")
        name = file_stem(ident) + ".cif"
        key = name.casefold()
        if key in owner:
            other, other_line = owner[key]
            what = (f"id {ident!r} occurs twice (lines {other_line} and {line})" if other == ident
                    else f"ids {other!r} (line {other_line}) and {ident!r} (line {line}) would both "
                         f"be written to {name}")
            raise ValueError(f"{path}: {what}; export writes one CIF file per id, so ids must be "
                             f"distinct file names: make them unique, choose rows with --ids, or "
                             f"write one .extxyz file")
        owner[key] = (ident, line)
        names.append(name)
        if name != ident + ".cif":
            renamed.append(f"{ident!r} -> {name}")
    return names, renamed


def cmd_export(args: argparse.Namespace) -> int:
    """Writes the unrelaxed structures of chosen placements as CIF files (or one extxyz file)."""
    import ase.io

    from defectspace.cli.common import output_is_folder
    from defectspace.io import InputError, atomic_path, read_table
    from defectspace.placement import PlacementError, parse_2dmd
    from defectspace.structure import placement_to_atoms

    lattice = lattice_of(args)
    path = Path(args.input)
    out = Path(args.output)
    if args.limit is not None and args.limit < 0:
        raise ValueError(f"--limit must be >= 0, got {args.limit}")
    df = read_table(path, columns=["id", "defects"])
    where, first = ("row", 1) if path.suffix.lower() == ".parquet" else ("line", 2)
    df["_line"] = np.arange(first, first + len(df))
    if args.ids:
        wanted = list(dict.fromkeys(i.strip() for i in args.ids.split(",") if i.strip()))
        missing = [i for i in wanted if i not in set(df["id"])]
        if missing:
            raise InputError(f"--ids: {len(missing)} ids not in {path}: {missing[:5]}")
        order = {ident: k for k, ident in enumerate(wanted)}
        df = df[df["id"].isin(wanted)]
        df = df.iloc[np.argsort(df["id"].map(order).to_numpy(), kind="stable")]
    if args.limit is not None:
        df = df.head(args.limit)
    ids = [str(i) for i in df["id"]]
    lines = [int(v) for v in df["_line"]]
    states = np.zeros((len(df), lattice.n_sites), dtype=np.uint8)
    for r, (text, line) in enumerate(zip(df["defects"], lines, strict=True)):
        try:
            states[r] = parse_2dmd([text], lattice)[0]
        except PlacementError as exc:
            raise InputError(f"{path}, {where} {line} (id {ids[r]}): "
                             f"{str(exc).removeprefix('row 0: ')}") from None
    if not output_is_folder("folder-or-extxyz", out):
        frames = []
        for ident, row in zip(ids, states, strict=True):
            atoms = placement_to_atoms(row, lattice)
            atoms.info["id"] = ident
            frames.append(atoms)
        with atomic_path(out) as tmp:
            ase.io.write(tmp, frames, format="extxyz")
    else:
        names, renamed = _export_names(ids, lines, path)
        out.mkdir(parents=True, exist_ok=True)
        folder = out.resolve()
        for name, row in zip(names, states, strict=True):
            target = folder / name
            if target.parent != folder:  # file_stem makes this impossible; never write outside
                raise ValueError(f"id file name {name!r} leaves the output folder {out}")
            with atomic_path(target) as tmp:
                ase.io.write(tmp, placement_to_atoms(row, lattice), format="cif")
        if renamed:
            print(f"export: {len(renamed)} ids are not safe file names and were written under safe "
                  f"ones: {', '.join(renamed[:10])}" + (f", ... ({len(renamed) - 10} more)"
                                                        if len(renamed) > 10 else ""),
                  file=sys.stderr)
    print(f"wrote {len(ids)} structures -> {out}", file=sys.stderr)
    return 0


def register(subparsers: Any) -> None:
    """Adds canonicalize, dedupe, enumerate, sample and export to the command line."""
    p = add_command(subparsers, "canonicalize", help="canonical key and orbit size of every placement",
                    example="defectspace canonicalize placements.csv -o keys.csv")
    add_input_args(p)
    add_lattice_args(p)
    p.set_defaults(handler=cmd_canonicalize)

    p = add_command(subparsers, "dedupe", help="one row per symmetry-distinct class, with counts",
                    example="defectspace dedupe placements.csv -o classes.csv")
    add_input_args(p)
    add_lattice_args(p)
    p.set_defaults(handler=cmd_dedupe)

    p = add_command(subparsers, "enumerate", help="all distinct placements of a defect multiset",
                    example="defectspace enumerate --counts 'S->V=2' --lattice unit_cell.cif "
                            "--supercell 4x4 -o classes.csv")
    p.add_argument("--counts", required=True, help="defect multiset, e.g. 'S->V=3' or "
                                                   "'Mo->W=1,S->V=2'")
    add_output(p, "-o", "--output", required=True, help="output CSV")
    add_lattice_args(p)
    p.set_defaults(handler=cmd_enumerate)

    p = add_command(subparsers, "sample", help="uniformly random placements of a defect multiset",
                    example="defectspace sample --counts 'S->V=2' -n 100 --lattice unit_cell.cif "
                            "-o sample.csv")
    p.add_argument("--counts", required=True, help="defect multiset, e.g. 'S->V=3'")
    p.add_argument("-n", type=int, required=True, help="number of placements")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    add_output(p, "-o", "--output", required=True, help="output CSV")
    add_lattice_args(p)
    p.set_defaults(handler=cmd_sample)

    p = add_command(subparsers, "export", help="write chosen placements as CIF files or one extxyz file",
                    example="defectspace export hits.csv -o cifs")
    add_input(p, "input", kind="table", help="screening Parquet or CSV with columns id,defects")
    add_output(p, "-o", "--output", kind="folder-or-extxyz", required=True,
               help="folder for CIF files (one per id, named after it), or a file ending in .extxyz")
    p.add_argument("--ids", help="comma-separated ids to export (default: all rows)")
    p.add_argument("--limit", type=int, help="export at most the first N rows")
    add_lattice_option(p, help="preset or unit-cell CIF (default: MoS2)")
    p.set_defaults(handler=cmd_export)
