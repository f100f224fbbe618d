"""Trains a property-aware MoS2 8x8 embedder: the shipped ``mos2_8x8_property``, or one per split.

    python scripts/train_property_embedder.py --out DIR [--steps 2000] [--exclude-split SEED]

Starts from the shipped contrastive embedder and trains it further on the contrastive loss and
property heads together (defectspace.ml.training.train_with_properties): SevenNet-0 formation
energies per site of all 6433 2DMD rows, DFT formation energies of the 148 low-density rows that
have them, DFT gaps of the 2300 low-density rows, GFN1-xTB gaps of the
high-density rows, and the composition. ``--exclude-split SEED`` leaves out every row that is a
test row of benchmarks/paper_table.py's split SEED in any column (the table's property-embedding
rows use those models); without it every row is used, as for the shipped
python/defectspace/data/models/mos2_8x8_property.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from defectspace.ml.embedder import Embedder
from defectspace.ml.training import PropertyLabels, train_with_properties
from defectspace.predict.recipes import benchmark_test_rows, load_labelled_rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=128, help="anchors and labelled rows per head per step")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--exclude-split", type=int, default=None)
    ap.add_argument("--data", default=None)
    args = ap.parse_args(argv)
    rows = load_labelled_rows(args.data)
    keep = np.ones(len(rows.ids), dtype=bool)
    if args.exclude_split is not None:
        keep[benchmark_test_rows(rows, args.exclude_split)] = False

    def pick(y: np.ndarray, mask: np.ndarray) -> PropertyLabels:
        m = keep & mask & np.isfinite(y)
        return PropertyLabels(rows.states[m], y[m])

    labels = {
        "formation_energy_per_site_sevenn": pick(rows.fe_sevenn, np.ones(len(keep), bool)),
        # SevenNet-0's low-density formation energies differ from DFT's by ~0.7 eV/site (references),
        # so the 148 DFT rows get a head of their own
        "formation_energy_per_site_dft": pick(rows.fe_dft, ~rows.high),
        "homo_lumo_gap_dft": pick(rows.gap_dft, ~rows.high),
        "homo_lumo_gap_xtb": pick(rows.gap_xtb, rows.high),
    }
    for name, lab in labels.items():
        print(f"{name}: {len(lab.y)} rows", file=sys.stderr)
    t0 = time.perf_counter()
    base = Embedder.load()
    tuned = train_with_properties(base, labels, steps=args.steps, batch_size=args.batch_size, seed=args.seed,
                                  progress=True)
    tuned.metadata["training"]["train_with_properties"]["excluded_split"] = args.exclude_split
    tuned.metadata["metrics"] = {"train_seconds": time.perf_counter() - t0}
    tuned.save(args.out)
    print(f"saved {args.out} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
