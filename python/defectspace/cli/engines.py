"""``defectspace label``: physics-engine labels, resumable (the ``label`` extra)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from defectspace.cli.common import add_command, add_input, add_output
from defectspace.cli.core import add_lattice_option, lattice_of


def register(subparsers: Any) -> None:
    """Adds label to the command line."""
    p = add_command(
        subparsers, "label",
        help="label structures with a physics engine (resumable, parallel)",
        example="defectspace label placements.csv -o labels.csv --engine xtb",
        description=(
            "Compute labels with SevenNet-0 / CHGNet (energy, 2DMD formation energy) or GFN1-xTB "
            "(HOMO-LUMO gap) and append them to OUTPUT row by row; rerun to resume. Placements "
            "of another lattice (--lattice WSe2 --supercell 8x8) are built into structures from "
            "their defects."
        ),
    )
    add_input(p, "input", kind="placements", metavar="INPUT",
              help="CSV with columns id,defects, or a folder of CIF files")
    add_output(p, "-o", "--output", required=True, help="output CSV (appended; resumable)")
    p.add_argument("--engine", required=True, choices=["sevenn", "chgnet", "xtb"],
                   help="sevenn: SevenNet-0 (the label extra), chgnet: CHGNet (the chgnet extra), "
                        "xtb: GFN1-xTB via tblite (the label extra)")
    p.add_argument(
        "--workers", type=int, default=None, help="worker processes, 1 thread each (default: cores)"
    )
    p.add_argument("--limit", type=int, default=None,
                   help="compute at most N new rows (0: only read and count)")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="per-structure time limit: an engine call that takes longer is stopped "
                        "(its worker replaced) and recorded as a failed row with the reason")
    p.add_argument("--retry-failed", action="store_true",
                   help="compute the rows recorded as failed again (rows whose input changed since "
                        "they were computed are always computed again)")
    add_input(p, "--ids-from", kind="ids", default=None,
              help="file of ids (one per line, or CSV with an id column)")
    add_input(p, "--structures", kind="structures", default=None,
              help="folder of CIFs for a CSV INPUT (default: 2DMD tar)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    p.add_argument("--no-openblas", action="store_true", help="xtb: do not LD_PRELOAD OpenBLAS")
    add_lattice_option(p, help="the lattice of INPUT's defects: a preset or a unit-cell CIF "
                               "(default: MoS2, 2DMD's 8x8 cell and CIFs; on another lattice the "
                               "structures are built from the placements and E_pristine is its "
                               "pristine supercell)")
    p.set_defaults(handler=cmd_label)


def cmd_label(args: argparse.Namespace) -> int:
    """Runs (or resumes) a labelling run; exit status 0 also when rows failed (they are recorded)."""
    from defectspace.engines import label_structures
    from defectspace.io import read_ids

    if args.output.lower().endswith(".json"):
        raise ValueError(f"-o {args.output}: the label file is a CSV; its sidecar is the .json beside it")
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    if args.limit is not None and args.limit < 0:
        raise ValueError(f"--limit must be >= 0, got {args.limit}")
    if args.timeout is not None and not args.timeout > 0:
        raise ValueError(f"--timeout must be positive, got {args.timeout}")
    ids = read_ids(args.ids_from) if args.ids_from else None
    lattice = lattice_of(args)
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
        retry_failed=args.retry_failed,
        timeout=args.timeout,
        lattice=lattice,
    )
    again = [f"{counts[k]} {what}" for k, what in (("changed", "whose input changed"),
                                                    ("retried", "failed before")) if counts[k]]
    print(
        f"{args.output}: {counts['done_before']} rows already there, computed {counts['computed']} "
        f"({counts['ok']} ok, {counts['failed']} failed)"
        + (f"; computing again {' and '.join(again)}" if again else ""),
        file=sys.stderr,
    )
    return 0
