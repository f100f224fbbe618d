from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ase import Atoms
from defectspace import Defect, Lattice, format_2dmd, parse_2dmd, to_defects
from defectspace.engines import driver as L
from defectspace.engines.references import (
    DMD_CHEMICAL_POTENTIALS,
    DMD_E_PRISTINE,
    References,
    formation_energy,
)
from defectspace.engines.xtb import XTBEngine
from defectspace.structure import map_structure, placement_to_atoms
from helpers import require_2dmd

CHECK_ROW = "6141d7eaee0a3fd43fb47bdd"
#: The labelled V5 row whose VASP energy gives 2DMD's check value 2.5756 eV (same composition as
#: the check row, which has no energy in mos2_8x8.csv).
CHECK_ENERGY_ROW = "6142665fee0a3fd43fb47f4b"


def _rows(data: Path) -> dict[str, dict[str, str]]:
    with open(data / "mos2_8x8.csv", encoding="utf-8", newline="") as fh:
        return {r["id"]: r for r in csv.DictReader(fh)}


LAT = Lattice.preset("MoS2", (8, 8))


def _defects(text: str) -> list[Defect]:
    return to_defects(parse_2dmd(text, LAT), LAT)[0]


def _pristine(lattice: Lattice = LAT) -> Atoms:
    return placement_to_atoms(np.zeros(lattice.n_sites, dtype=np.uint8), lattice)


def test_formation_energy_formula_on_2dmd_vasp_numbers(data_2dmd: Path) -> None:
    rows = _rows(data_2dmd)
    # 2DMD's check value through the formula, with the check row's own defects.
    check = _defects(rows[CHECK_ROW]["defects"])
    e_def = float(rows[CHECK_ENERGY_ROW]["energy"])
    assert _defects(rows[CHECK_ENERGY_ROW]["defects"])  # same composition as the check row
    per_site = formation_energy(e_def, DMD_E_PRISTINE, check, DMD_CHEMICAL_POTENTIALS) / len(check)
    assert per_site == pytest.approx(2.5756, abs=5e-5)
    # every one of the 148 rows with VASP energies reproduces 2DMD's formation energy per site
    n = 0
    for r in rows.values():
        if r["energy"]:
            d = _defects(r["defects"])
            fe = formation_energy(float(r["energy"]), DMD_E_PRISTINE, d, DMD_CHEMICAL_POTENTIALS)
            assert fe / len(d) == pytest.approx(float(r["formation_energy_per_site"]), abs=1e-6)
            n += 1
    assert n == 148
    with pytest.raises(ValueError, match="no chemical potential"):
        formation_energy(0.0, 0.0, check, {"Mo": 0.0})


def test_structures_map_onto_2dmd_site_order(data_2dmd: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # the data is found through DEFECTSPACE_2DMD alone (set by the fixture), wherever the package
    # is installed and whatever the working folder
    monkeypatch.chdir(tmp_path)
    rows = _rows(data_2dmd)
    ids = [CHECK_ROW, *[i for i in rows if rows[i]["density"] == "high"][:3]]
    structures = L.structures_for_ids(ids)
    assert list(structures) == ids
    for sid, atoms in structures.items():
        mapping = map_structure(atoms, LAT)
        assert not mapping.ambiguous and mapping.max_displacement < 1e-3
        assert format_2dmd(mapping.states, LAT) == [rows[sid]["defects"]]
        # the core's unrelaxed structure of the placement has the CIF's in-plane cell
        built = placement_to_atoms(mapping.states, LAT)
        np.testing.assert_allclose(built.cell.cellpar()[[0, 1, 5]], atoms.cell.cellpar()[[0, 1, 5]],
                                   atol=1e-3)
    with pytest.raises(KeyError, match="no CIF"):
        L.structures_for_ids(["not-an-id"])


class FakeEngine:
    """Cheap deterministic energy engine; raises for ids listed in ``fail_n_atoms``."""

    name = "fake"
    kind = "energy"

    def __init__(self, fail_n_atoms: int | None = None) -> None:
        self.fail_n_atoms = fail_n_atoms
        self.calls = 0

    def setup(self) -> None:
        pass

    def version(self) -> str:
        return "fake 1"

    def settings(self) -> dict[str, Any]:
        return {"fail_n_atoms": self.fail_n_atoms}

    def compute(self, atoms: Atoms) -> dict[str, float]:
        self.calls += 1
        if len(atoms) == self.fail_n_atoms:
            raise RuntimeError("SCF did not converge (simulated)")
        return {"energy": -0.1 * float(atoms.numbers.sum())}

    def references(self) -> References:
        mu = {"Mo": -4.2, "S": -1.6, "W": -7.4, "Se": -3.4}
        return References(mu=mu, e_pristine=-0.1 * float(_pristine().numbers.sum()), details={})


def _small_input(tmp_path: Path, n: int) -> tuple[Path, dict[str, dict[str, str]]]:
    rows = _rows(require_2dmd())
    chosen = [rows[i] for i in list(rows)[:: len(rows) // n][:n]]
    path = tmp_path / "input.csv"
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "defects"])
        for r in chosen:
            w.writerow([r["id"], r["defects"]])
    return path, {r["id"]: r for r in chosen}


def _loader(ids: Any, source: Path | None) -> dict[str, Atoms]:
    """Structures built from the pristine supercell and the 2DMD defect strings (no tar needed)."""
    rows = _rows(require_2dmd())
    out = {}
    for sid in ids:
        out[sid] = placement_to_atoms(parse_2dmd(rows[sid]["defects"], LAT)[0], LAT)
    return out


def test_resume_after_interruption_has_no_gaps_and_no_duplicates(tmp_path: Path) -> None:
    inp, rows = _small_input(tmp_path, 8)
    out = tmp_path / "labels.csv"
    first = L.label_structures(
        inp, out, FakeEngine(), workers=1, limit=5, structure_loader=_loader, progress=False
    )
    assert first == {"done_before": 0, "computed": 5, "ok": 5, "failed": 0, "changed": 0, "retried": 0}
    # simulate a kill in the middle of writing row 5: cut the file inside its last line
    text = out.read_text()
    out.write_text(text[: text.rstrip("\n").rfind("\n") + 12])
    engine = FakeEngine()
    second = L.label_structures(
        inp, out, engine, workers=1, structure_loader=_loader, progress=False
    )
    assert second == {"done_before": 4, "computed": 4, "ok": 4, "failed": 0, "changed": 0, "retried": 0}
    assert engine.calls == 4  # nothing computed twice
    got = L.read_label_csv(out)
    assert sorted(r["id"] for r in got) == sorted(rows)  # no gaps, no duplicates
    assert out.read_text().endswith("\n")
    # identical to an uninterrupted run
    clean = tmp_path / "clean.csv"
    L.label_structures(
        inp, clean, FakeEngine(), workers=1, structure_loader=_loader, progress=False
    )
    by_id = {r["id"]: r for r in L.read_label_csv(clean)}
    for r in got:
        for col in ("energy", "formation_energy", "formation_energy_per_site"):
            assert float(r[col]) == pytest.approx(float(by_id[r["id"]][col]))
    # a third run computes nothing; the sidecar records the engine and its references
    assert (
        L.label_structures(
            inp, out, FakeEngine(), workers=1, structure_loader=_loader, progress=False
        )["computed"]
        == 0
    )
    meta = json.loads(L.sidecar_path(out).read_text())
    assert meta["engine"] == "fake" and meta["chemical_potentials"]["Mo"] == -4.2


def test_committed_label_file_resumes_byte_for_byte(tmp_path: Path) -> None:
    """The engines' output format is the committed files' own: a resume keeps every byte and
    appends, and the sidecar keeps its keys and references."""
    import defectspace

    labels = Path(defectspace.__file__).parent / "data" / "labels"
    out, sidecar = tmp_path / "sevenn_mos2_8x8.csv", tmp_path / "sevenn_mos2_8x8.json"
    original = (labels / out.name).read_bytes()
    out.write_bytes(original)
    sidecar.write_bytes((labels / sidecar.name).read_bytes())
    before = json.loads(sidecar.read_text())
    ids = [r["id"] for r in L.read_label_csv(out)]
    inp = tmp_path / "input.csv"
    inp.write_text("id,defects\n" + "".join(f"{i},\n" for i in ids) + "new,vac:1:S->V;sub:6:Mo->W\n")

    class Sevenn(FakeEngine):
        name = "sevenn"

    counts = L.label_structures(inp, out, Sevenn(), workers=1, progress=False, structure_loader=(
        lambda chunk, src: {i: placement_to_atoms(parse_2dmd("vac:1:S->V;sub:6:Mo->W", LAT)[0], LAT)
                            for i in chunk}))
    assert counts == {"done_before": len(ids), "computed": 1, "ok": 1, "failed": 0, "changed": 0,
                      "retried": 0}
    text = out.read_bytes()
    assert text.startswith(original) and text[len(original):].startswith(b"new,ok,191,")
    after = json.loads(sidecar.read_text())
    assert set(after) == set(before)
    assert after["chemical_potentials"] == before["chemical_potentials"]
    assert after["E_pristine"] == before["E_pristine"]
    # the new row's formation energy uses the recorded references and 2DMD's formula
    row = L.read_label_csv(out)[-1]
    mu = before["chemical_potentials"]
    e_f = float(row["energy"]) - before["E_pristine"] + mu["S"] + mu["Mo"] - mu["W"]
    assert float(row["formation_energy_per_site"]) == pytest.approx(e_f / 2, abs=1e-5)


def test_failing_calculation_is_recorded_not_fatal(tmp_path: Path) -> None:
    inp, rows = _small_input(tmp_path, 6)
    n_atoms = {sid: len(a) for sid, a in _loader(list(rows), None).items()}
    bad = next(sid for sid, n in n_atoms.items() if list(n_atoms.values()).count(n) == 1)
    out = tmp_path / "labels.csv"
    counts = L.label_structures(
        inp,
        out,
        FakeEngine(fail_n_atoms=n_atoms[bad]),
        workers=1,
        structure_loader=_loader,
        progress=False,
    )
    assert counts["failed"] == 1 and counts["ok"] == len(rows) - 1
    got = {r["id"]: r for r in L.read_label_csv(out)}
    assert got[bad]["status"] == "failed"
    assert "SCF did not converge" in got[bad]["error"] and got[bad]["energy"] == ""
    assert all(
        r["status"] == "ok" and math.isfinite(float(r["energy"]))
        for sid, r in got.items()
        if sid != bad
    )


def test_output_of_another_engine_is_refused(tmp_path: Path) -> None:
    inp, _ = _small_input(tmp_path, 2)
    out = tmp_path / "labels.csv"
    out.write_text(",".join(L.GAP_COLUMNS) + "\n")
    with pytest.raises(ValueError, match="has columns"):
        L.label_structures(
            inp, out, FakeEngine(), workers=1, structure_loader=_loader, progress=False
        )


def test_cli_parser() -> None:
    from defectspace.cli import build_parser

    args = build_parser().parse_args(
        ["label", "in.csv", "-o", "out.csv", "--engine", "xtb", "--workers", "2", "--limit", "3"]
    )
    assert (args.input, args.output, args.engine, args.workers, args.limit) == (
        "in.csv",
        "out.csv",
        "xtb",
        2,
        3,
    )
    with pytest.raises(ValueError, match="unknown engine"):
        L.make_engine("vasp")


@pytest.mark.slow
def test_sevenn_engine_path_on_check_row(tmp_path: Path, data_2dmd: Path) -> None:
    pytest.importorskip("sevenn")
    rows = _rows(data_2dmd)
    inp = tmp_path / "one.csv"
    inp.write_text(f"id,defects\n{CHECK_ROW},{rows[CHECK_ROW]['defects']}\n")
    out = tmp_path / "sevenn.csv"
    counts = L.label_structures(inp, out, "sevenn", workers=1, progress=False)
    assert counts["ok"] == 1
    (row,) = L.read_label_csv(out)
    meta = json.loads(L.sidecar_path(out).read_text())
    mu, e_pristine = meta["chemical_potentials"], meta["E_pristine"]
    # the formula applied by hand to the engine numbers
    e_f = float(row["energy"]) - e_pristine + mu["Mo"] + 2 * mu["S"] - 2 * mu["Se"]
    assert float(row["formation_energy_per_site"]) == pytest.approx(e_f / 3, abs=1e-5)
    # 2DMD's geometry is close to the engine's relaxed MoS2 (per formula unit, eV)
    details = meta["reference_details"]
    assert abs(details["E_pristine_per_fu"] - details["E_MoS2_per_fu"]) < 0.01
    # same order of magnitude as DFT (2.5756 eV per defect, with other chemical potentials)
    assert 1.0 < float(row["formation_energy_per_site"]) < 4.0


@pytest.mark.slow
def test_xtb_gap_of_small_pristine_cell() -> None:
    pytest.importorskip("tblite")
    values = XTBEngine().compute(_pristine(Lattice.preset("MoS2", (3, 3))))
    assert values["homo"] < values["lumo"]
    assert 0.3 < values["homo_lumo_gap"] < 4.0


def test_folder_of_cifs_as_input(tmp_path: Path) -> None:
    from ase.io import write

    inp, rows = _small_input(tmp_path, 3)
    folder = tmp_path / "cifs"
    folder.mkdir()
    for sid, atoms in _loader(list(rows), None).items():
        write(folder / f"{sid}.cif", atoms, format="cif")
    from_csv, from_dir = tmp_path / "csv.csv", tmp_path / "dir.csv"
    L.label_structures(
        inp, from_csv, FakeEngine(), workers=1, structure_loader=_loader, progress=False
    )
    counts = L.label_structures(folder, from_dir, FakeEngine(), workers=1, progress=False)
    assert counts["ok"] == 3
    a = {r["id"]: r for r in L.read_label_csv(from_csv)}
    b = {r["id"]: r for r in L.read_label_csv(from_dir)}
    assert a.keys() == b.keys()
    for sid in a:  # defects recovered from the CIF geometry give the same formation energy
        assert float(b[sid]["formation_energy_per_site"]) == pytest.approx(
            float(a[sid]["formation_energy_per_site"]), abs=1e-5
        )


@pytest.mark.slow
def test_two_worker_processes_match_one(tmp_path: Path) -> None:
    inp, _rows4 = _small_input(tmp_path, 4)
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    L.label_structures(inp, one, FakeEngine(), workers=1, structure_loader=_loader, progress=False)
    counts = L.label_structures(
        inp, two, FakeEngine(), workers=2, structure_loader=_loader, progress=False
    )
    assert counts["ok"] == 4
    a = {r["id"]: r["energy"] for r in L.read_label_csv(one)}
    b = {r["id"]: r["energy"] for r in L.read_label_csv(two)}
    assert a == b


_SLOW_ENGINE = '''
import os, time
from defectspace.engines.references import References

class SlowEngine:
    name, kind = "fake", "energy"
    def setup(self): pass
    def version(self): return "slow 1"
    def settings(self): return {}
    def compute(self, atoms):
        open(os.path.join(os.environ["PID_DIR"], str(os.getpid())), "w").close()
        time.sleep(120)
        return {"energy": 0.0}
    def references(self):
        return References(mu={"Mo": -4.2, "S": -1.6, "W": -7.4, "Se": -3.4}, e_pristine=0.0, details={})
'''


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            return not any(line.startswith("State:") and "Z" in line for line in fh)
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_killed_labelling_leaves_no_worker_behind(tmp_path: Path) -> None:
    inp, _ = _small_input(tmp_path, 4)
    (tmp_path / "slow_engine.py").write_text(_SLOW_ENGINE)
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    driver = (f"import sys; sys.path.insert(0, {str(tmp_path)!r}); from slow_engine import SlowEngine; "
              "from defectspace.engines import driver as L; "
              f"L.label_structures({str(inp)!r}, {str(tmp_path / 'out.csv')!r}, SlowEngine(), workers=2, "
              "progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", driver], env={**os.environ, "PID_DIR": str(pid_dir)})
    try:
        deadline = time.monotonic() + 120
        while len(list(pid_dir.iterdir())) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        workers = [int(p.name) for p in pid_dir.iterdir()]
        assert len(workers) == 2, "the two workers never started computing"
        proc.kill()  # SIGKILL: the parent gets no chance to clean up
        proc.wait()
        deadline = time.monotonic() + 20
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(w) for w in workers)
    finally:
        proc.kill()
        for w in pid_dir.iterdir():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(w.name), signal.SIGKILL)


_PROCESS_ENGINES = '''
import os, time
from defectspace.engines.references import References

class BrokenEngine:
    """Its setup fails in worker processes (a package that imports in the parent but not there)."""
    name, kind = "broken", "energy"
    def __init__(self):
        self.parent = os.getpid()
    def setup(self):
        if os.getpid() != self.parent:
            open(os.path.join(os.environ["START_DIR"], str(os.getpid())), "w").close()
            raise ImportError("libxtb.so.6: cannot open shared object file")
    def version(self): return "broken 1"
    def settings(self): return {}
    def compute(self, atoms): return {"energy": 0.0}
    def references(self):
        return References(mu={"Mo": -4.2, "S": -1.6, "W": -7.4, "Se": -3.4}, e_pristine=0.0, details={})

class HangingEngine(BrokenEngine):
    """Hangs on structures of 190 atoms (one vacancy and ... ), quick on the others."""
    name = "hanging"
    def setup(self): pass
    def compute(self, atoms):
        if len(atoms) == int(os.environ.get("HANG_N_ATOMS", "-1")):
            time.sleep(3600)
        return {"energy": -0.1 * float(atoms.numbers.sum())}
'''


@pytest.fixture
def process_engines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Engines in a module that spawned worker processes import too."""
    folder = tmp_path / "engines_module"
    folder.mkdir()
    (folder / "process_engines.py").write_text(_PROCESS_ENGINES)
    monkeypatch.syspath_prepend(str(folder))
    start_dir = tmp_path / "starts"
    start_dir.mkdir()
    monkeypatch.setenv("START_DIR", str(start_dir))
    import importlib

    return importlib.import_module("process_engines")


@pytest.mark.slow
def test_engine_that_cannot_start_stops_the_run_with_one_line(
        tmp_path: Path, process_engines: Any, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Without its engine, label respawned pool workers endlessly (2,252 tracebacks in 11 min):
    a worker that cannot set its engine up now ends the run, exit 2, one line."""
    inp = tmp_path / "in.csv"
    inp.write_text("id,defects\na,vac:17:S->V\nb,vac:2:S->V\n")
    out = tmp_path / "out.csv"
    t0 = time.monotonic()
    with pytest.raises(L.EngineStartError, match=r"engine broken could not start in a worker process: "
                                                 r"ImportError: libxtb\.so\.6"):
        L.label_structures(inp, out, process_engines.BrokenEngine(), workers=2, progress=False,
                           structure_loader=lambda ids, src: {i: _pristine() for i in ids})
    assert time.monotonic() - t0 < 120
    assert len(list(Path(os.environ["START_DIR"]).iterdir())) <= 2  # started once, not respawned
    from defectspace.cli import main

    monkeypatch.setattr(L, "make_engine", lambda name: process_engines.BrokenEngine())
    assert main(["label", str(inp), "-o", str(tmp_path / "cli.csv"), "--engine", "xtb",
                 "--no-progress", "--workers", "1", "--timeout", "60"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("defectspace: error: engine broken could not start") and err.count("\n") == 1


@pytest.mark.slow
def test_timeout_makes_a_hanging_structure_a_failed_row(
        tmp_path: Path, process_engines: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """--timeout: the hanging engine call is stopped (its worker replaced) and the run goes on."""
    inp = tmp_path / "in.csv"
    inp.write_text("id,defects\na,vac:17:S->V\nhang,vac:2:S->V;vac:5:S->V\nb,sub:6:Mo->W\n")
    monkeypatch.setenv("HANG_N_ATOMS", "190")  # 'hang' has two vacancies: 190 atoms
    out = tmp_path / "out.csv"
    text = {"a": "vac:17:S->V", "hang": "vac:2:S->V;vac:5:S->V", "b": "sub:6:Mo->W"}

    def loader(ids: Any, src: Any) -> dict[str, Atoms]:
        return {i: placement_to_atoms(parse_2dmd(text[i], LAT)[0], LAT) for i in ids}

    counts = L.label_structures(inp, out, process_engines.HangingEngine(), workers=1, timeout=5,
                                progress=False, structure_loader=loader)
    assert (counts["ok"], counts["failed"]) == (2, 1)
    rows = {r["id"]: r for r in L.read_label_csv(out)}
    assert rows["hang"]["status"] == "failed"
    assert rows["hang"]["error"].startswith("Timeout: no result within 5 s")
    assert rows["a"]["status"] == rows["b"]["status"] == "ok"


def test_changed_input_is_computed_again_and_failed_rows_on_request(tmp_path: Path) -> None:
    """After fixing the input, label said '2 rows already there, computed 0' and never retried a
    failed row: rows whose input changed are computed again, failed rows with retry_failed."""
    inp = tmp_path / "in.csv"
    inp.write_text("id,defects\na,vac:17:S->V\nb,vac:2:S->V;vac:5:S->V\nc,sub:6:Mo->W\n")
    out = tmp_path / "out.csv"

    def loader(ids: Any, src: Any) -> dict[str, Atoms]:
        with open(inp, encoding="utf-8") as fh:
            text = {r["id"]: r["defects"] for r in csv.DictReader(fh)}
        return {i: placement_to_atoms(parse_2dmd(text[i], LAT)[0], LAT) for i in ids}

    first = L.label_structures(inp, out, FakeEngine(fail_n_atoms=190), workers=1, progress=False,
                               structure_loader=loader)
    assert (first["ok"], first["failed"]) == (2, 1)
    assert L.label_structures(inp, out, FakeEngine(), workers=1, progress=False,
                              structure_loader=loader)["computed"] == 0
    # the user fixes row b (a different placement): it is computed again, the others are kept
    inp.write_text("id,defects\na,vac:17:S->V\nb,vac:2:S->V\nc, sub:6:Mo->W \n")
    second = L.label_structures(inp, out, FakeEngine(fail_n_atoms=190), workers=1, progress=False,
                                structure_loader=loader)
    assert second == {"done_before": 2, "computed": 1, "ok": 1, "failed": 0, "changed": 1,
                      "retried": 0}  # c's spacing is no change
    rows = L.read_label_csv(out)
    assert [r["id"] for r in rows] == ["a", "c", "b"] and rows[2]["status"] == "ok"
    # a failed row is kept until asked for
    inp.write_text("id,defects\na,vac:17:S->V\nb,vac:2:S->V\nc,sub:6:Mo->W\nd,vac:8:S->V;vac:11:S->V\n")
    third = L.label_structures(inp, out, FakeEngine(fail_n_atoms=190), workers=1, progress=False,
                               structure_loader=loader)
    assert (third["computed"], third["failed"]) == (1, 1)
    assert L.label_structures(inp, out, FakeEngine(), workers=1, progress=False,
                              structure_loader=loader)["computed"] == 0
    fourth = L.label_structures(inp, out, FakeEngine(), workers=1, progress=False,
                                structure_loader=loader, retry_failed=True)
    assert (fourth["retried"], fourth["computed"], fourth["ok"]) == (1, 1, 1)
    assert {r["id"]: r["status"] for r in L.read_label_csv(out)} == dict.fromkeys("abcd", "ok")


@pytest.mark.slow
def test_limit_0_on_a_huge_input_only_reads_and_counts(tmp_path: Path) -> None:
    """label --limit 0 on 800,000 rows took 70 s and 3.8 GB to compute nothing (it loaded the
    engine and computed its references): now no engine, no references, no workers."""
    from defectspace import Canonicalizer

    strings = format_2dmd(Canonicalizer(LAT).sample({"S->V": 2, "Mo->W": 1}, 1000, seed=0), LAT)
    inp = tmp_path / "big.csv"
    with open(inp, "w", encoding="utf-8") as fh:
        fh.write("id,defects\n")
        fh.writelines(f"r{i},{strings[i % 1000]}\n" for i in range(800_000))
    out = tmp_path / "out.csv"
    # VmHWM is this process's own peak: ru_maxrss keeps the peak of the process that forked it
    # (Linux carries it across exec), so under a large pytest process it read 1.6-1.7 GB
    code = ("import re, sys; from defectspace.cli import main; rc = main(sys.argv[1:]); "
            "print(re.search(r'VmHWM:\\s*(\\d+)', open('/proc/self/status').read()).group(1)); sys.exit(rc)")
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-c", code, "label", str(inp), "-o", str(out), "--engine",
                        "sevenn", "--limit", "0", "--no-progress"], capture_output=True, text=True,
                       timeout=300, check=False)
    seconds = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert "0 rows already there, computed 0" in r.stderr
    peak_mib = int(r.stdout.split()[-1]) / 1024
    assert peak_mib < 1500, peak_mib
    assert not L.sidecar_path(out).exists()  # no references computed, no engine loaded
    print(f"label --limit 0 on 800,000 rows: {seconds:.1f} s, peak {peak_mib:.0f} MiB")
