from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from defectspace import Canonicalizer, Lattice, parse_2dmd
from defectspace.canonical import key_from_string
from defectspace.cli import main


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "in.csv"
    p.write_text(text)
    return p


def test_canonicalize_keeps_columns_and_matches_api(tmp_path: Path) -> None:
    src = write(tmp_path, "id,defects,note\na,vac:17:S->V;sub:6:Mo->W,x\nb,vac:2:S->V;sub:0:Mo->W,y\n"
                          "c,,pristine\n")
    out = tmp_path / "out.csv"
    assert main(["canonicalize", str(src), "-o", str(out)]) == 0
    df = pd.read_csv(out, keep_default_na=False)
    assert list(df.columns)[:3] == ["id", "defects", "note"]
    assert {"canonical_key", "orbit_size", "canonical_defects"} <= set(df.columns)
    lat = Lattice.preset("MoS2", (8, 8))
    c = Canonicalizer(lat)
    x = parse_2dmd(["vac:17:S->V;sub:6:Mo->W", "vac:2:S->V;sub:0:Mo->W", ""], lat)
    np.testing.assert_array_equal(key_from_string(df["canonical_key"].tolist(), 48), c.keys(x))
    np.testing.assert_array_equal(df["orbit_size"], c.orbit_sizes(x))
    assert df["orbit_size"].iloc[2] == 1


def test_dedupe_counts_classes(tmp_path: Path) -> None:
    lat = Lattice.preset("MoS2", (8, 8))
    c = Canonicalizer(lat)
    base = c.sample({"S->V": 2}, 5, seed=1)
    images = c.random_images(np.repeat(base, 4, axis=0), seed=3).images
    from defectspace import format_2dmd

    strings = format_2dmd(images, lat)
    src = write(tmp_path, "id,defects\n" + "".join(f"r{i},{s}\n" for i, s in enumerate(strings)))
    out = tmp_path / "dd.csv"
    assert main(["dedupe", str(src), "-o", str(out)]) == 0
    df = pd.read_csv(out)
    n_classes = len({k.tobytes() for k in c.keys(base)})
    assert len(df) == n_classes
    assert df["count"].sum() == 20
    assert df["first_id"].iloc[0] == "r0"


def test_enumerate_and_sample(tmp_path: Path) -> None:
    out = tmp_path / "e.csv"
    assert main(["enumerate", "--counts", "S->V=3", "-o", str(out)]) == 0
    df = pd.read_csv(out)
    assert len(df) == 497 and df["orbit_size"].sum() == 341_376
    out2 = tmp_path / "s.csv"
    assert main(["sample", "--counts", "Mo->W=1,S->V=2", "-n", "50", "-o", str(out2)]) == 0
    assert len(pd.read_csv(out2)) == 50


@pytest.mark.parametrize(
    ("text", "message"),
    [("id,defects\na,vac:17:S->V\nb,vac:0:S->V\n", "line 3 (id b): site 0 holds Mo, not S"),
     ("id,defects\na,vac:999:S->V\n", "site 999 out of range"),
     ("id,defects\na,vac:1:S->V;vac:1:S->V\n", "listed twice"),
     ("id,defects\na,sub:3:Mo->Se\n", "cannot hold 'Se'"),
     ("id,defects\na,bogus\n", "malformed defect"),
     ("id,defects\na,vac:x:S->V\n", "not an integer"),
     ("id,stuff\na,1\n", "missing column"),
     ("id,defects\na,vac:1:S->V\na,vac:2:S->V\n", "duplicate id")],
)
def test_bad_input_exit_code_2_and_message(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           text: str, message: str) -> None:
    src = write(tmp_path, text)
    out = tmp_path / "out.csv"
    assert main(["canonicalize", str(src), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.startswith("defectspace: error:")
    assert "Traceback" not in err
    assert not out.exists()  # nothing half-written


def test_skip_reports_each_bad_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write(tmp_path, "id,defects\na,vac:17:S->V\nb,vac:0:S->V\nc,vac:5:S->V\nd,nope\n")
    out = tmp_path / "out.csv"
    assert main(["canonicalize", str(src), "-o", str(out), "--on-error", "skip"]) == 0
    err = capsys.readouterr().err
    assert "skipped line 3 (id b)" in err and "skipped line 5 (id d)" in err
    assert pd.read_csv(out)["id"].tolist() == ["a", "c"]


def test_missing_file_and_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["canonicalize", str(tmp_path / "nope.csv"), "-o", str(tmp_path / "o.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err
    src = write(tmp_path, "id,defects\na,vac:17:S->V\n")
    assert main(["canonicalize", str(src), "-o", str(tmp_path / "o.csv"), "--lattice", "graphite"]) == 2
    assert "--lattice" in capsys.readouterr().err
    assert main(["canonicalize", str(src), "-o", str(tmp_path / "o.csv"), "--supercell", "8"]) == 2
    assert "supercell" in capsys.readouterr().err
    assert main(["enumerate", "--counts", "S->V3", "-o", str(tmp_path / "e.csv")]) == 2
    assert "--counts" in capsys.readouterr().err
    assert main(["enumerate", "--counts", "Q->V=3", "-o", str(tmp_path / "e.csv")]) == 2
    assert "unknown defect kind" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["canonicalize"])
    assert exc.value.code == 2


def test_console_script_and_module_entry_points(tmp_path: Path) -> None:
    src = write(tmp_path, "id,defects\na,vac:17:S->V\n")
    r = subprocess.run([sys.executable, "-m", "defectspace", "canonicalize", str(src), "-o",
                        str(tmp_path / "o.csv")], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "defectspace", "canonicalize", str(src), "-o",
                        str(tmp_path / "o.csv"), "--supercell", "0x0"], capture_output=True,
                       text=True, check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_2dmd_csv_round_trip(data_2dmd: Path, tmp_path: Path) -> None:
    out = tmp_path / "keys.csv"
    assert main(["canonicalize", str(data_2dmd / "mos2_8x8.csv"), "-o", str(out)]) == 0
    df = pd.read_csv(out)
    assert len(df) == 6433 and df["canonical_key"].nunique() == 6433
    # the canonical defects describe an equivalent placement
    lat = Lattice.preset("MoS2", (8, 8))
    c = Canonicalizer(lat)
    a = parse_2dmd(df["defects"].tolist(), lat)
    b = parse_2dmd(df["canonical_defects"].tolist(), lat)
    assert c.equivalent(a, b).all()


def test_export_then_canonicalize_structures_round_trip(tmp_path: Path) -> None:
    lat = Lattice.preset("MoS2", (8, 8))
    c = Canonicalizer(lat)
    x = c.sample({"S->V": 3, "Mo->W": 2, "S->Se": 1}, 6, seed=4)
    from defectspace import format_2dmd

    src = write(tmp_path, "id,defects\n" + "".join(f"p{i},{s}\n" for i, s in enumerate(format_2dmd(x, lat))))
    folder = tmp_path / "cifs"
    assert main(["export", str(src), "-o", str(folder)]) == 0
    assert len(list(folder.glob("*.cif"))) == 6
    out = tmp_path / "k.csv"
    assert main(["canonicalize", str(folder), "-o", str(out)]) == 0
    df = pd.read_csv(out).set_index("id").loc[[f"p{i}" for i in range(6)]]
    np.testing.assert_array_equal(key_from_string(df["canonical_key"].tolist(), 48), c.keys(x))
    assert main(["export", str(src), "-o", str(tmp_path / "one.extxyz"), "--ids", "p2,p4"]) == 0
    import ase.io

    frames = ase.io.read(tmp_path / "one.extxyz", index=":")
    assert [f.info["id"] for f in frames] == ["p2", "p4"]
    assert main(["export", str(src), "-o", str(folder), "--ids", "nope"]) == 2
