"""``defectspace predict``: properties from the saved (by default the shipped) predictors."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from defectspace.cli.common import add_command, add_input, add_output
from defectspace.cli.core import lattice_from


def cmd_predict(args: argparse.Namespace) -> int:
    """``defectspace predict INPUT -o OUT``: id plus one column per predicted property."""
    import numpy as np
    import pandas as pd

    from defectspace.io import read_placements, report_errors, write_csv_atomic
    from defectspace.predict import PropertyPredictor, default_model_paths

    paths = [Path(m) for m in args.model] if args.model else list(default_model_paths().values())
    models = [PropertyPredictor.load(p) for p in paths]
    lattice = models[0].lattice
    assert lattice is not None
    for m in models[1:]:
        m._check_lattice(lattice)
    if args.lattice is not None:
        models[0]._check_lattice(lattice_from(args.lattice, args.supercell, args.lattice_defects))
    for path, m in zip(paths, models, strict=True):
        print(f"model {path}: {m.describe_training()}", file=sys.stderr)
    table = read_placements(args.input, lattice, args.on_error)
    report_errors(table)
    out = pd.DataFrame({"id": table.ids})
    for m in models:
        out[m.target] = m.predict(table.states, lattice) if len(table.ids) else np.zeros(0)
    write_csv_atomic(out, args.output)
    print(f"predicted {len(out)} placements ({len(table.errors)} skipped) -> {args.output}",
          file=sys.stderr)
    return 0


def register(subparsers: Any) -> None:
    """Adds predict to the command line."""
    p = add_command(
        subparsers, "predict", help="predict HOMO-LUMO gap and formation energy per site (eV)",
        example="defectspace predict placements.csv -o properties.csv",
        description="Predicts properties of defect placements with saved predictors (default: "
                    "the shipped MoS2 8x8 gap and formation-energy-per-site models) and writes "
                    "id plus one column per property, in eV.")
    add_input(p, "input", kind="placements",
              help="CSV with columns id,defects (2DMD form), or CIF structures")
    add_output(p, "-o", "--output", required=True, help="output CSV")
    add_input(p, "--model", kind="predictor", action="append", default=None,
              help="a saved predictor directory (repeat for several; default: shipped ones)")
    add_input(p, "--lattice", kind="lattice", default=None,
              help="check that the models fit this lattice (preset or unit-cell CIF)")
    p.add_argument("--supercell", default="8x8", help="supercell for --lattice (default: 8x8)")
    p.add_argument("--defects", dest="lattice_defects", default=None, metavar="'H->X,...'",
                   help="the defects of --lattice, e.g. 'B->V,B->C' (default: the preset's own)")
    p.add_argument("--on-error", choices=["fail", "skip"], default="fail",
                   help="bad input rows: stop with an error (default) or skip them")
    p.set_defaults(handler=cmd_predict)
