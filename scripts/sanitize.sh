#!/usr/bin/env bash
# Builds the C++ core with AddressSanitizer + UndefinedBehaviorSanitizer (CMake option
# DEFECTSPACE_SANITIZE) and warnings as errors (DEFECTSPACE_WERROR) into a private folder, runs the
# C++ test of the core (tests/cpp, via ctest) and then the test suite against that build.
#
#   scripts/sanitize.sh [pytest args...]      (default: the whole suite)
#
# CPython itself is not instrumented, so the ASan runtime is preloaded; leak checking is off
# (CPython's interned objects would drown the report) and any ASan/UBSan report fails the run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${SANITIZE_DIR:-$ROOT/build/sanitize}"
PY="${PYTHON:-python}"
rm -rf "$OUT/site"
mkdir -p "$OUT"
"$PY" -m pip install --no-deps --no-build-isolation --target "$OUT/site" \
  -Ccmake.define.DEFECTSPACE_SANITIZE=ON -Ccmake.define.DEFECTSPACE_WERROR=ON \
  -Ccmake.define.DEFECTSPACE_BUILD_TESTS=ON -Ccmake.build-type=RelWithDebInfo \
  -Cbuild-dir="$OUT/build" "$ROOT" >"$OUT/build.log" 2>&1 || { tail -50 "$OUT/build.log"; exit 1; }
# The C++ test links the sanitizer runtime itself (no preload needed).
(cd "$OUT/build" && ASAN_OPTIONS="abort_on_error=1:halt_on_error=1" UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" \
  ctest --output-on-failure) || exit 1
# An editable install's import redirect would shadow the sanitized build: drop it.
cat >"$OUT/site/sitecustomize.py" <<'PYEOF'
import sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__]
PYEOF
ASAN_LIB="$(g++ -print-file-name=libasan.so)"
UBSAN_LIB="$(g++ -print-file-name=libubsan.so)"
cd "$ROOT"
export PYTHONPATH="$OUT/site${PYTHONPATH:+:$PYTHONPATH}"
export LD_PRELOAD="$ASAN_LIB:$UBSAN_LIB"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
SANITIZED_SITE="$OUT/site" "$PY" - <<'PYEOF'
import defectspace._core as c, os, sys
site = os.path.realpath(os.environ["SANITIZED_SITE"])
assert os.path.realpath(c.__file__).startswith(site + os.sep), (c.__file__, site)
print("sanitized core:", c.__file__, file=sys.stderr)
PYEOF
exec "$PY" -m pytest -p no:cacheprovider "${@:-tests}"
