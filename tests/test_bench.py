"""``defectspace bench``: the speed table a wheel user can run on their own lattice."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from defectspace import Lattice
from defectspace.cli import main
from defectspace.cli.bench import defect_counts, parse_defects


def test_bench_prints_a_rate_and_a_checked_ratio_per_density(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "b.csv"
    argv = ["bench", "--supercell", "4x4", "--defects", "3,30%", "--seconds", "0.05", "-o", str(csv)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    table = pd.read_csv(csv)
    assert table["defects"].tolist() == [3, 14] and table["partitions_equal"].all()
    assert (table["keys_per_s_per_core"] > table["numpy_per_s_per_core"]).all()
    assert "MoS2 4x4: 48 sites, 192 symmetry operations" in out
    rows = [line.split() for line in out.splitlines() if line.split() and line.split()[0].isdigit()]
    assert [r[0] for r in rows] == ["3", "14"]
    for r in rows:
        per_core, numpy_rate, ratio = (float(v.rstrip("x").replace(",", "")) for v in (r[2], r[4], r[5]))
        assert per_core > numpy_rate > 0 and ratio > 1
    assert "DIFFER" not in out


def test_defects_are_counts_or_percentages_spread_over_the_kinds() -> None:
    lat = Lattice.preset("MoS2", (8, 8))
    assert parse_defects("3, 10%,30%", lat) == [("3", 3), ("10%", 19), ("30%", 58)]
    for text in ("0", "x", "101%", "193"):
        with pytest.raises(ValueError, match="--defects"):
            parse_defects(text, lat)
    assert defect_counts(lat, 3) == {"Mo->V": 1, "Mo->W": 1, "S->V": 1, "S->Se": 0}
    full = defect_counts(lat, lat.n_sites)
    assert full["Mo->V"] + full["Mo->W"] == 64 and full["S->V"] + full["S->Se"] == 128


def test_bad_defects_exit_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--defects", "3,lots"]) == 2
    err = capsys.readouterr().err
    assert err.count("defectspace: error:") == 1 and "'lots'" in err
