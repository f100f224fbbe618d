"""``defectspace predict``: properties from the saved (by default the shipped) predictors."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from defectspace.cli.common import add_command, add_input, add_output
from defectspace.cli.core import lattice_from


def cmd_predict(args: argparse.Namespace) -> int:
    """``defectspace predict INPUT -o OUT``: id and, per predicted property, its value, its 1-sigma
    uncertainty (``<property>_std``) and ``<property>_out_of_domain`` (the model never saw a
    placement like it: a warning on stderr says how many and why)."""
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
        if not len(table.ids):
            out[m.target] = out[f"{m.target}_std"] = np.zeros(0)
            out[f"{m.target}_out_of_domain"] = np.zeros(0, dtype=bool)
            continue
        try:  # the mean is predict()'s, bit for bit; the 1-sigma widens outside the training domain
            mean, std = m.predict_with_std(table.states, lattice)
        except ValueError:  # a model that states no uncertainty
            mean, std = m.predict(table.states, lattice), np.full(len(table.ids), np.nan)
        out[m.target] = mean
        out[f"{m.target}_std"] = std
        flags = m.domain_flags(table.states, lattice)  # all zero where the domain is unknown
        out[f"{m.target}_out_of_domain"] = flags > 0
        warning = m.domain.describe(flags, m.target) if m.domain is not None else None
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
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
                    "id and per property its value and 1-sigma uncertainty (<property>_std) in eV and "
                    "<property>_out_of_domain (a warning says how many lie outside its training).")
    add_input(p, "input", kind="placements",
              help="CSV with columns id,defects (2DMD form), or CIF structures")
    add_output(p, "-o", "--output", required=True, help="output CSV")
    add_input(p, "--model", kind="predictor", action="append", default=None,
              help="a saved predictor directory or a shipped one's name, e.g. "
                   "wse2_8x8_formation_energy_per_site (repeat for several; default: the shipped "
                   "MoS2 8x8 ones)")
    add_input(p, "--lattice", kind="lattice", default=None,
              help="check that the models fit this lattice (preset or unit-cell CIF)")
    p.add_argument("--supercell", default="8x8", help="supercell for --lattice (default: 8x8)")
    p.add_argument("--defects", dest="lattice_defects", default=None, metavar="'H->X,...'",
                   help="the defects of --lattice, e.g. 'B->V,B->C' (default: the preset's own)")
    p.add_argument("--on-error", choices=["fail", "skip"], default="fail",
                   help="bad input rows: stop with an error (default) or skip them")
    p.set_defaults(handler=cmd_predict)
