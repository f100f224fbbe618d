#!/usr/bin/env bash
# Runs each atheris fuzzer for a fixed budget (seconds, default 120) and prints libFuzzer's stats.
# Inputs that crash are written to tests/fuzz_corpus/<target>/ and replayed by
# tests/test_fuzz_regressions.py from then on.   Needs: pip install atheris
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUDGET="${1:-120}"
status=0
for target in parse canonical structure label; do
  echo "== $target ($BUDGET s)"
  python "$ROOT/fuzz/run.py" "$target" "$BUDGET" 2>&1 | grep -E "^(Done|stat::|#[0-9]+ +DONE)|crash-|Error" || true
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
done
exit $status
