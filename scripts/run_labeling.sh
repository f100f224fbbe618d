#!/usr/bin/env bash
# Background labelling driver for the committed label files (issue 5). Resumable: rerun it and it
# continues where the files end (rows already present are skipped, a half-written line is dropped).
#
#   nohup scripts/run_labeling.sh > ~/.cache/defectspace/labeling/run_labeling.log 2>&1 &
#
# Order, $WORKERS workers (default 1), niced: (1) SevenNet-0 energies / formation energies of all
# 6433 MoS2 8x8 configurations (rows with DFT formation energies first, then DFT gaps, then the
# rest); (2) GFN1-xTB gaps of 215 high-density configurations, then of the low-density rows with
# a DFT gap (rows with DFT formation energies first), then of the other 285 high-density ones.
# xTB runs with Debian's OpenBLAS preloaded when present (apt-get install libopenblas0-serial;
# see defectspace.engines.xtb.find_openblas).
# Environment: WORKERS (default 1), DEFECTSPACE_2DMD (default <repo>/../shared/data/2dmd), PYTHON (default python).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA="${DEFECTSPACE_2DMD:-$REPO/../shared/data/2dmd}"
PY="${PYTHON:-python}"
WORK="${DEFECTSPACE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/defectspace}/labeling"
LABELS="$REPO/python/defectspace/data/labels"
mkdir -p "$WORK" "$LABELS"

exec 9>"$WORK/run_labeling.lock"
if ! flock -n 9; then
  echo "run_labeling.sh is already running (lock $WORK/run_labeling.lock)" >&2
  exit 1
fi

export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 DEFECTSPACE_2DMD="$DATA"

# id orders (written to the cache, not the repo)
"$PY" - "$DATA/mos2_8x8.csv" "$WORK" <<'PYEOF'
import sys, pandas as pd
d = pd.read_csv(sys.argv[1]); work = sys.argv[2]
fe = d.formation_energy_per_site.notna(); gap = d.homo_lumo_gap.notna(); low = d.density == "low"
sevenn = pd.concat([d[fe].id, d[gap & ~fe].id, d[~gap & ~fe].id])
high = d[~low].id
xtb = pd.concat([high[:215], d[low & gap & fe].id, d[low & gap & ~fe].id, high[215:]])
assert sevenn.is_unique and len(sevenn) == len(d)
open(f"{work}/ids_sevenn.txt", "w").write("\n".join(sevenn) + "\n")
open(f"{work}/ids_xtb.txt", "w").write("\n".join(xtb) + "\n")
PYEOF

# the installed defectspace (pip install .): its command line, `defectspace label`
LABEL=(nice -n 19 "$PY" -m defectspace label "$DATA/mos2_8x8.csv" --workers "${WORKERS:-1}" --no-progress)
echo "[$(date -Is)] sevenn start"
"${LABEL[@]}" --engine sevenn --ids-from "$WORK/ids_sevenn.txt" -o "$LABELS/sevenn_mos2_8x8.csv"
echo "[$(date -Is)] xtb start"
"${LABEL[@]}" --engine xtb --ids-from "$WORK/ids_xtb.txt" -o "$LABELS/xtb_gfn1_mos2_8x8.csv"
echo "[$(date -Is)] all done"
