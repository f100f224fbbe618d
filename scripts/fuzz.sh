#!/usr/bin/env bash
# Runs each atheris fuzzer for a fixed budget (seconds, default 120) and prints libFuzzer's stats
# and each target's wall time (FUZZ_TARGETS='structure label' runs a subset).
# Inputs that crash are written to tests/fuzz_corpus/<target>/ and replayed by
# tests/test_fuzz_regressions.py from then on.   Needs: pip install atheris
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUDGET="${1:-120}"
status=0
for target in ${FUZZ_TARGETS:-parse canonical structure label}; do
  echo "== $target ($BUDGET s of fuzzing; wall time includes loading and replaying the corpus)"
  start=$SECONDS
  python "$ROOT/fuzz/run.py" "$target" "$BUDGET" 2>&1 | grep -E "^(Done|stat::|#[0-9]+ +DONE)|crash-|Error" || true
  rc=${PIPESTATUS[0]}
  echo "wall: $((SECONDS - start)) s, exit status $rc$([ "$rc" -eq 0 ] || echo ': a finding, see tests/fuzz_corpus/'"$target")"
  [ "$rc" -eq 0 ] || status=1
done
exit $status
