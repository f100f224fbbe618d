"""Regressions of the C++ core, each written to fail before its fix.

Cases that crashed the interpreter run in a child process, so a relapse fails one test instead of
ending the session.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest


def _run_child(code: str, timeout: float = 300.0) -> dict[str, object]:
    """Runs code in a fresh interpreter; it must print one JSON object as its last line."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert proc.returncode == 0, f"child exited with {proc.returncode}:\n{proc.stderr[-3000:]}"
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("n", [295, 296, 300])
def test_thin_supercell_group_is_checked_over_its_distinct_elements(n: int) -> None:
    # group.cpp compared the translation views with the table over the element count before
    # duplicates were removed: 1 x N from N = 296 read past the table (crash or a false error).
    result = _run_child(f"""
        import json
        import numpy as np
        from defectspace import Canonicalizer, Lattice
        lat = Lattice.preset("MoS2", (1, {n}))
        g = lat.symmetry()
        perms = g.permutations
        distinct = len(np.unique(perms, axis=0))
        c = Canonicalizer(lat)
        rng = np.random.default_rng(0)
        x = c.sample({{"S->V": 5, "Mo->W": 2}}, 20, seed=1)
        ops = rng.integers(0, g.order, size=len(x))
        y = c.apply(x, ops)
        same = bool((c.keys(x) == c.keys(y)).all())
        print(json.dumps({{"order": g.order, "distinct": distinct, "rows": int(perms.shape[0]),
                          "keys_invariant": same}}))
    """)
    assert result["order"] == result["distinct"] == result["rows"]
    assert result["order"] == 2 * n  # identity and one mirror survive on 1 x N; the rest coincide
    assert result["keys_invariant"]
