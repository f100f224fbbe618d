"""Replays the fuzzers' seeds and every input that once crashed them (tests/fuzz_corpus/)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "fuzz"))

import targets  # noqa: E402

CASES = sorted(
    [(name, p) for name in targets.TARGETS for p in (ROOT / "tests" / "fuzz_corpus" / name).glob("*")]
    + [(name, p) for name in targets.TARGETS for p in (ROOT / "fuzz" / "seeds" / name).glob("*")]
)


@pytest.mark.parametrize(("name", "path"), CASES, ids=[f"{n}-{p.name[:16]}" for n, p in CASES])
def test_replay(name: str, path: Path) -> None:
    targets.TARGETS[name](path.read_bytes())


def test_there_are_cases() -> None:
    assert len(CASES) >= 10
