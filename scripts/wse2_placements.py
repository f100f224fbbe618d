"""WSe2 8x8 placements for the second shipped material, mapped from 2DMD's MoS2 8x8 placements.

2DMD's WSe2 set was generated as its MoS2 set was (low density: every distinct placement of the
same defect types; high density: random placements), with the roles of the elements swapped. Its
rows are not available here, so this script maps each MoS2 row (``../shared/data/2dmd/mos2_8x8.csv``
or the data locator's) under Mo <-> W, S <-> Se onto the same site index of
``Lattice.preset("WSe2", (8, 8))`` (same site formula k = 3*(8i+j) + L, L = 0 W, 1 bottom Se,
2 top Se): a vacancy stays a vacancy, ``sub:k:Mo->W`` becomes ``sub:k:W->Mo`` and ``sub:k:S->Se``
becomes ``sub:k:Se->S``. Ids are kept (each row is the WSe2 image of the 2DMD MoS2 row of that
id). These are the MoS2 placements mapped, not 2DMD's own WSe2 rows.

    python scripts/wse2_placements.py [MOS2_CSV] [-o python/defectspace/data/labels/wse2_8x8_placements.csv]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pandas as pd

SWAP = {"Mo": "W", "W": "Mo", "S": "Se", "Se": "S", "V": "V"}
_ENTRY = re.compile(r"^(vac|sub):(\d+):([A-Za-z]+)->([A-Za-z]+)$")


def map_defects(text: str) -> str:
    """One 2DMD ``defects`` string of MoS2 under Mo <-> W, S <-> Se (sites unchanged)."""
    out = []
    for entry in str(text).split(";"):
        m = _ENTRY.match(entry.strip())
        if m is None:
            raise ValueError(f"not a 2DMD defect entry: {entry!r}")
        kind, site, host, species = m.groups()
        out.append(f"{kind}:{site}:{SWAP[host]}->{SWAP[species]}")
    return ";".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mos2_csv", nargs="?", default=None, help="2DMD's mos2_8x8.csv (default: located)")
    ap.add_argument("-o", "--output", default="python/defectspace/data/labels/wse2_8x8_placements.csv")
    args = ap.parse_args(argv)
    from defectspace.datasets import find_2dmd
    from defectspace.io import read_placements
    from defectspace.lattice import Lattice

    src = Path(args.mos2_csv) if args.mos2_csv else find_2dmd()
    df = pd.read_csv(src, usecols=["id", "density", "description", "n_defects", "defects"])
    df["defects"] = [map_defects(t) for t in df["defects"]]
    out = Path(args.output)
    df.to_csv(out, index=False, lineterminator="\n")
    table = read_placements(out, Lattice.preset("WSe2", (8, 8)))  # every row parses on WSe2
    print(f"{len(table.ids)} WSe2 8x8 placements mapped from {src} -> {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
