"""The one atomic writer: whole files or nothing, with the permissions of a plain open()."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pandas as pd
import pytest
from defectspace.io import atomic_path, write_csv_atomic


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_atomic_writes_respect_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        write_csv_atomic(pd.DataFrame({"a": [1, 2]}), tmp_path / "t.csv")
        with atomic_path(tmp_path / "sub" / "b.bin") as tmp:
            tmp.write_bytes(b"xyz")
    finally:
        os.umask(old)
    for path in (tmp_path / "t.csv", tmp_path / "sub" / "b.bin"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # mkstemp made 0o600
    assert (tmp_path / "sub" / "b.bin").read_bytes() == b"xyz"


def test_atomic_write_leaves_the_old_file_when_the_block_fails(tmp_path: Path) -> None:
    target = tmp_path / "t.csv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError, match="killed"), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]  # no temporary left behind
