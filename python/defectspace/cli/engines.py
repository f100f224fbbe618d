"""``defectspace label``: physics-engine labels, resumable (the ``label`` extra)."""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path
from typing import Any


def _read_ids_file(path: str | Path) -> list[str]:
    """Ids from a file: one per line, or a CSV whose header has an ``id`` column."""
    lines = [ln.strip() for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln.strip()]
    if lines and "," in lines[0] and "id" in lines[0].split(","):
        return [r["id"] for r in csv.DictReader(io.StringIO("\n".join(lines)))]
    return lines


def register(subparsers: Any) -> None:
    """Adds label to the command line."""
    p = subparsers.add_parser(
        "label",
        help="label structures with a physics engine (resumable, parallel)",
        description=(
            "Compute labels with SevenNet-0 / CHGNet (energy, 2DMD formation energy) or GFN1-xTB "
            "(HOMO-LUMO gap) and append them to OUTPUT row by row; rerun to resume."
        ),
    )
    p.add_argument("input", metavar="INPUT", help="CSV with columns id,defects, or a folder of CIF files")
    p.add_argument("-o", "--output", required=True, help="output CSV (appended; resumable)")
    p.add_argument("--engine", required=True, choices=["sevenn", "chgnet", "xtb"])
    p.add_argument(
        "--workers", type=int, default=None, help="worker processes, 1 thread each (default: cores)"
    )
    p.add_argument("--limit", type=int, default=None, help="compute at most N new rows")
    p.add_argument("--ids-from", default=None, help="file of ids (one per line, or CSV with an id column)")
    p.add_argument("--structures", default=None, help="folder of CIFs for a CSV INPUT (default: 2DMD tar)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    p.add_argument("--no-openblas", action="store_true", help="xtb: do not LD_PRELOAD OpenBLAS")
    p.set_defaults(handler=cmd_label)


def cmd_label(args: argparse.Namespace) -> int:
    """Runs (or resumes) a labelling run; exit status 0 also when rows failed (they are recorded)."""
    from defectspace.engines import label_structures

    ids = _read_ids_file(args.ids_from) if args.ids_from else None
    counts = label_structures(
        args.input,
        args.output,
        args.engine,
        workers=args.workers,
        limit=args.limit,
        ids=ids,
        structures=args.structures,
        progress=not args.no_progress,
        use_openblas=not args.no_openblas,
    )
    print(
        f"{args.output}: {counts['done_before']} rows already there, computed {counts['computed']} "
        f"({counts['ok']} ok, {counts['failed']} failed)",
        file=sys.stderr,
    )
    return 0
