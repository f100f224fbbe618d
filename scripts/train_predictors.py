"""Trains the shipped MoS2 8x8 property predictors (defectspace.predict.recipes) and writes them.

    python scripts/train_predictors.py [--out python/defectspace/data/predictors] [--data DIR]

Gap: DFT gaps of 2DMD plus GFN1-xTB gaps corrected to DFT (rows without DFT); formation energy per
site: DFT rows with a SevenNet-0 cluster-expansion prior. Both calibrated on 5-fold out-of-fold
residuals. Tens of minutes on 2 cores (the gap ensemble's calibration folds dominate).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from defectspace.predict.recipes import train_default_models

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "python" / "defectspace" / "data" / "predictors"))
    ap.add_argument("--data", default=None, help="2DMD folder (default: $DEFECTSPACE_2DMD or ../shared)")
    ap.add_argument("--labels", default=str(ROOT / "python" / "defectspace" / "data" / "labels"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    saved = train_default_models(args.out, args.data, args.labels, seed=args.seed)
    for target, path in saved.items():
        print(f"{target}: {path}", file=sys.stderr)
    print(f"done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
