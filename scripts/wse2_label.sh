#!/usr/bin/env bash
# SevenNet-0 formation energies of the WSe2 8x8 placements mapped from 2DMD's MoS2 ones
# (scripts/wse2_placements.py), one worker, resumable: rerun it and it continues where the label
# file ends. Rows go in a seeded random order (numpy default_rng(0).permutation), so a file that
# holds only part of the set is a uniform sample of it.
#
#   nohup scripts/wse2_label.sh > /tmp/wse2_label.log 2>&1 &
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python}"
LABELS="$REPO/python/defectspace/data/labels"
ORDER="${TMPDIR:-/tmp}/wse2_8x8_label_order.txt"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
"$PY" - "$LABELS/wse2_8x8_placements.csv" "$ORDER" <<'PYEOF'
import sys, numpy as np, pandas as pd
ids = pd.read_csv(sys.argv[1]).id.to_numpy()
open(sys.argv[2], "w").write("\n".join(ids[np.random.default_rng(0).permutation(len(ids))]) + "\n")
PYEOF
exec nice -n 5 "$PY" -m defectspace label "$LABELS/wse2_8x8_placements.csv" --engine sevenn \
  --lattice WSe2 --supercell 8x8 --workers 1 --ids-from "$ORDER" --no-progress \
  -o "$LABELS/sevenn_wse2_8x8.csv"
