"""Regressions of the C++ core, each written to fail before its fix.

Cases that crashed the interpreter run in a child process, so a relapse fails one test instead of
ending the session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

UNDER_ASAN = "libasan" in os.environ.get("LD_PRELOAD", "") or "ASAN_OPTIONS" in os.environ
"""The sanitizer run (scripts/sanitize.sh): ASan's shadow memory and allocator make RSS and
address-space limits meaningless there."""


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


_PEAK_RSS = """
def peak_rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads peak RSS from /proc/self/status")
@pytest.mark.skipif(UNDER_ASAN, reason="ASan's shadow memory inflates RSS")
def test_large_supercell_group_memory_grows_with_the_supercell_not_its_square() -> None:
    # 100x100 took 175 s and 14.2 GB: a dense (order x n_sites) permutation table and a set of
    # every row. 60x60 would need about 2 GB that way; the group itself needs a few MB.
    result = _run_child(_PEAK_RSS + textwrap.dedent("""
        import json, time
        import numpy as np
        from defectspace import Canonicalizer, Lattice
        lat = Lattice.preset("MoS2", (60, 60))
        before = peak_rss_mib()
        t0 = time.perf_counter()
        g = lat.symmetry()
        e = Canonicalizer(lat).enumerate({"S->V": 1})
        seconds = time.perf_counter() - t0
        print(json.dumps({"order": g.order, "classes": len(e.orbit_size),
                          "orbit": int(e.orbit_size[0]), "growth_mib": peak_rss_mib() - before,
                          "seconds": seconds}))
    """))
    assert result["order"] == 12 * 3600
    assert result["classes"] == 1 and result["orbit"] == 2 * 3600
    assert result["growth_mib"] < 100, result
    assert result["seconds"] < 20, result


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="limits the address space with RLIMIT_AS")
@pytest.mark.skipif(UNDER_ASAN, reason="ASan reserves terabytes of address space and allocates lazily")
def test_allocation_failures_are_memory_errors_that_say_what_needed_the_memory() -> None:
    # Under a memory limit the 100x100 group ended in "MemoryError: std::bad_alloc".
    result = _run_child("""
        import json, resource
        from defectspace import Canonicalizer, Lattice
        def vm_size():
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmSize:"):
                        return int(line.split()[1]) * 1024
        small = Canonicalizer(Lattice.preset("MoS2", (12, 12)), n_threads=1)
        big = Lattice.preset("MoS2", (100, 100))
        limit = vm_size() + (64 << 20)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        messages = {}
        group = big.symmetry()  # fits: a few MB
        try:
            group.permutations  # 13.4 GiB
        except MemoryError as exc:
            messages["permutations"] = str(exc)
        try:
            small.enumerate({"S->V": 4})  # about 160,000 classes of 432 bytes, in growing vectors
        except MemoryError as exc:
            messages["enumerate"] = str(exc)
        print(json.dumps({"order": group.order, "messages": messages}))
    """)
    assert result["order"] == 12 * 100 * 100
    messages = result["messages"]
    assert isinstance(messages, dict)
    assert "100x100 supercell" in messages["permutations"] and "13.4 GiB" in messages["permutations"]
    assert "12x12 supercell" in messages["enumerate"] and "counts [0, 0, 4, 0]" in messages["enumerate"]
