"""``defectspace fit``: a property predictor trained on the user's own labels
(:mod:`defectspace.predict.fit`), saved as a folder that ``defectspace predict --model`` reads."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from defectspace.cli.common import add_command, add_input, add_output
from defectspace.cli.core import add_lattice_option, lattice_of


def cmd_fit(args: argparse.Namespace) -> int:
    """Reads the labels, fits the candidates, keeps the best by out-of-fold MAE and saves it."""
    from defectspace.predict.fit import CANDIDATES, FitConfig, fit_predictor, read_labels

    if args.shipped:
        return _fit_shipped(args)
    if args.labels is None or args.target is None:
        raise ValueError("fit needs LABELS and --target (or --shipped to rebuild the shipped models)")
    if args.folds < 2:
        raise ValueError(f"--folds must be >= 2, got {args.folds}")
    if args.regressor not in ("auto", *CANDIDATES):
        raise ValueError(f"--regressor must be auto or one of {', '.join(CANDIDATES)}")
    lattice = lattice_of(args, args.structures)
    data = read_labels(args.labels, args.target, lattice, args.structures)
    config = FitConfig(args.target, extensive=args.extensive, regressor=args.regressor,
                       seed=args.seed, folds=args.folds,
                       label_source=args.label_source or f"user labels {args.target} from {data.source}, "
                                                         f"{len(data.ids)} rows")
    model = fit_predictor(data.states, data.y, lattice, config)
    out = model.save(args.output)
    scores = ", ".join(f"{k} {v:.1f}" for k, v in model.info["candidates_cv_mae_meV"].items())
    print(f"fitted {args.target} on {len(data.ids)} rows of {lattice!r}: {model.info['chosen']} chosen "
          f"by {model.info['calibration_folds']}-fold out-of-fold MAE (x 1000: {scores}) -> {out}",
          file=sys.stderr)
    return 0


def _fit_shipped(args: argparse.Namespace) -> int:
    """Rebuilds the shipped MoS2 8x8 predictors (:mod:`defectspace.predict.recipes`) from 2DMD's
    table (``LABELS``, or the data locator's) and the package's engine labels."""
    from defectspace.predict import PropertyPredictor
    from defectspace.predict.recipes import LABELS_DIR, train_default_models

    saved = train_default_models(args.output, args.labels, labels_dir=args.engine_labels or LABELS_DIR,
                                 seed=args.seed)
    for target, path in saved.items():
        model = PropertyPredictor.load(path)
        print(f"{target}: out-of-fold MAE {model.info.get('cv_mae_meV', float('nan')):.2f} meV "
              f"-> {path}", file=sys.stderr)
    return 0


def register(subparsers: Any) -> None:
    """Adds fit to the command line."""
    p = add_command(
        subparsers, "fit", help="train a property predictor on your own labels",
        example="defectspace fit labels.csv --target homo_lumo_gap -o my_model --lattice MoS2 "
                "--supercell 8x8 --defects 'Mo->V,Mo->W,S->V,S->Se'",
        description="Trains a property predictor on labelled placements: a CSV or Parquet table "
                    "with id, defects (2DMD form) and the label column, or a table with id and the "
                    "label column beside CIF structures (--structures). Candidate regressors (ridge "
                    "cluster expansions, boosted trees) tune their hyperparameters by "
                    "cross-validation; the best by out-of-fold MAE is kept with a calibrated "
                    "uncertainty. 'defectspace predict --model MODEL_DIR' uses it.")
    add_input(p, "labels", kind="table", nargs="?", default=None,
              help="CSV or Parquet: id, defects and the label column (or id and the label column "
                   "with --structures); with --shipped, 2DMD's mos2_8x8.csv (default: the data "
                   "locator's)")
    add_output(p, "-o", "--output", kind="folder", required=True, help="model folder to write")
    p.add_argument("--target", help="name of the label column (the property)")
    p.add_argument("--shipped", action="store_true",
                   help="rebuild the shipped MoS2 8x8 gap and formation-energy predictors (2DMD's "
                        "DFT labels and the package's engine labels) into -o")
    add_input(p, "--engine-labels", kind="structures", default=None,
              help="with --shipped: the folder of engine labels (default: the package's data/labels)")
    p.add_argument("--extensive", action="store_true",
                   help="the label is per defect (e.g. formation energy per site): fitted as a total "
                        "and divided back")
    add_input(p, "--structures", kind="placements", default=None,
              help="CIF structures (a file, a folder or a tar) whose file names are the table's ids")
    p.add_argument("--regressor", default="auto", help="auto (the best by cross-validation), ridge "
                                                       "or gbm (default: auto)")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds (default: 5)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--label-source", default="", help="what the labels are, saved with the model")
    add_lattice_option(p)
    p.set_defaults(handler=cmd_fit)
