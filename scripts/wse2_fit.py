"""The shipped WSe2 8x8 formation-energy-per-site predictor, fitted by ``defectspace fit`` on the
SevenNet-0 labels of the mapped placements (python/defectspace/data/labels/, README there).

1. joins ``sevenn_wse2_8x8.csv`` (rows with ``status = ok``) to ``wse2_8x8_placements.csv`` by id
   into a table ``id,density,defects,formation_energy_per_site`` (``--table``);
2. held-out test: ``defectspace fit`` on a seeded random 90 % of the rows, predictions on the other
   10 % (MAE overall and per density, written to ``--report``);
3. the shipped model: ``defectspace fit`` on every row into ``-o``.

    python scripts/wse2_fit.py [-o python/defectspace/data/predictors/wse2_8x8_formation_energy_per_site]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
LABELS = REPO / "python" / "defectspace" / "data" / "labels"
TARGET = "formation_energy_per_site"


def joined_table(labels: Path, placements: Path) -> pd.DataFrame:
    """Labelled placements: the ok rows of ``labels`` with their ``defects`` and ``density``."""
    lab = pd.read_csv(labels, usecols=["id", "status", TARGET])
    lab = lab[lab["status"] == "ok"].drop(columns="status")
    pl = pd.read_csv(placements, usecols=["id", "density", "defects"])
    out = pl.merge(lab, on="id", how="inner", validate="one_to_one")
    return out[["id", "density", "defects", TARGET]]


def fit(table: Path, out: Path, source: str, seed: int) -> None:
    from defectspace.cli import main as cli_main

    argv = ["fit", str(table), "-o", str(out), "--target", TARGET, "--extensive", "--lattice",
            "WSe2", "--supercell", "8x8", "--seed", str(seed), "--label-source", source]
    print("defectspace " + " ".join(argv), file=sys.stderr)
    if cli_main(argv) != 0:
        raise SystemExit("fit failed")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--output", default=str(
        REPO / "python/defectspace/data/predictors/wse2_8x8_formation_energy_per_site"))
    ap.add_argument("--labels", default=str(LABELS / "sevenn_wse2_8x8.csv"))
    ap.add_argument("--placements", default=str(LABELS / "wse2_8x8_placements.csv"))
    ap.add_argument("--table", default=None, help="where to write the joined table (default: a temp file)")
    ap.add_argument("--report", default=None, help="JSON file for the held-out test metrics")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--test-fraction", type=float, default=0.1)
    ap.add_argument("--skip-test", action="store_true")
    args = ap.parse_args(argv)
    from defectspace.io import read_placements
    from defectspace.lattice import Lattice
    from defectspace.predict import PropertyPredictor

    df = joined_table(Path(args.labels), Path(args.placements))
    n_low, n_high = int((df.density == "low").sum()), int((df.density == "high").sum())
    work = Path(tempfile.mkdtemp(prefix="wse2_fit_"))
    table = Path(args.table) if args.table else work / "wse2_8x8_sevenn_fe.csv"
    df.to_csv(table, index=False, lineterminator="\n")
    source = (f"SevenNet-0 formation energies per site (unrelaxed single points, engine chemical "
              f"potentials) of {len(df)} WSe2 8x8 placements ({n_low} low, {n_high} high density) "
              f"mapped from 2DMD's MoS2 rows (Mo<->W, S<->Se); not DFT")
    report: dict[str, object] = {"rows": len(df), "low": n_low, "high": n_high}
    if not args.skip_test:
        rng = np.random.default_rng(args.seed)
        test = np.zeros(len(df), dtype=bool)
        test[rng.permutation(len(df))[: round(args.test_fraction * len(df))]] = True
        train_csv, test_csv = work / "train.csv", work / "test.csv"
        df[~test].to_csv(train_csv, index=False, lineterminator="\n")
        df[test].to_csv(test_csv, index=False, lineterminator="\n")
        fit(train_csv, work / "heldout_model", source + f" (held-out split: {int((~test).sum())} train)",
            args.seed)
        model = PropertyPredictor.load(work / "heldout_model")
        lat = Lattice.preset("WSe2", (8, 8))
        states = read_placements(test_csv, lat).states
        mean, std = model.predict_with_std(states, lat)
        err = np.abs(mean - df[test][TARGET].to_numpy())
        dens = df[test]["density"].to_numpy()
        report.update({
            "test_rows": int(test.sum()), "train_rows": int((~test).sum()),
            "test_mae_meV": 1000 * float(err.mean()),
            "test_mae_meV_low": 1000 * float(err[dens == "low"].mean()) if (dens == "low").any() else None,
            "test_mae_meV_high": 1000 * float(err[dens == "high"].mean()) if (dens == "high").any() else None,
            "test_rows_low": int((dens == "low").sum()), "test_rows_high": int((dens == "high").sum()),
            "heldout_cv_mae_meV": float(model.info["cv_mae_meV"]), "heldout_chosen": model.info["chosen"],
            "test_coverage_1sigma": float(np.mean(err <= std)),
        })
        print(json.dumps(report, indent=1), file=sys.stderr)
    fit(table, Path(args.output), source, args.seed)
    model = PropertyPredictor.load(args.output)
    report.update({"cv_mae_meV": float(model.info["cv_mae_meV"]), "chosen": model.info["chosen"],
                   "candidates_cv_mae_meV": model.info["candidates_cv_mae_meV"]})
    print(json.dumps(report, indent=1), file=sys.stderr)
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
