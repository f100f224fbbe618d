"""The second shipped material, WSe2 8x8 (issue 14): placements mapped from 2DMD's MoS2 rows,
the shipped embedder and formation-energy predictor, and ``label`` on a lattice other than MoS2."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from ase import Atoms
from defectspace.canonical import Canonicalizer
from defectspace.engines import driver as L
from defectspace.engines.references import References, formation_energy
from defectspace.io import read_placements
from defectspace.lattice import Lattice
from defectspace.placement import random_placements, to_defects
from helpers import assert_invariant, require_2dmd

PKG = Path(__file__).resolve().parents[1] / "python" / "defectspace"
LABELS = PKG / "data" / "labels"
PLACEMENTS = LABELS / "wse2_8x8_placements.csv"
EMBEDDER = PKG / "data" / "models" / "wse2_8x8"
FE_MODEL = PKG / "data" / "predictors" / "wse2_8x8_formation_energy_per_site"
WSE2 = Lattice.preset("WSe2", (8, 8))
MOS2 = Lattice.preset("MoS2", (8, 8))
_SWAP = {"Mo": "W", "W": "Mo", "S": "Se", "Se": "S", "V": "V"}


def _mapped(text: str) -> str:
    """The WSe2 image of a MoS2 2DMD defects string (scripts/wse2_placements.py's rule)."""
    return re.sub(r"([A-Za-z]+)->([A-Za-z]+)", lambda m: f"{_SWAP[m[1]]}->{_SWAP[m[2]]}", text)


def _partition(keys: np.ndarray) -> np.ndarray:
    """Each row's class as the index of its class's first row (comparable across key spaces)."""
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    return np.asarray(first[inverse.ravel()])


# --------------------------------------------------------------------------- placements
def test_wse2_preset_is_2dmd_site_order() -> None:
    """k = 3*(8i + j) + L with L = 0 W at ((1/3 + i)/8, (2/3 + j)/8), L = 1, 2 Se below/above at
    ((2/3 + i)/8, (1/3 + j)/8): 2DMD's formula with the elements swapped."""
    frac = WSE2.fractional_positions
    species = WSE2.site_species
    for i, j in ((0, 0), (3, 5), (7, 2)):
        k = 3 * (8 * i + j)
        np.testing.assert_allclose(frac[k, :2], [(1 / 3 + i) / 8, (2 / 3 + j) / 8], atol=1e-12)
        np.testing.assert_allclose(frac[k + 1, :2], [(2 / 3 + i) / 8, (1 / 3 + j) / 8], atol=1e-12)
        np.testing.assert_allclose(frac[k + 2, :2], frac[k + 1, :2], atol=1e-12)
        assert frac[k + 1, 2] < frac[k, 2] < frac[k + 2, 2]
        assert (species[k], species[k + 1], species[k + 2]) == ("W", "Se", "Se")


def test_mapped_placements_keep_the_mos2_partition() -> None:
    """The shipped WSe2 placements are 2DMD's MoS2 rows under Mo<->W, S<->Se on the same sites,
    and the canonical keys of the MoS2 rows and of their WSe2 images partition the rows
    identically (the two lattices have the same symmetry acting on the same site numbers)."""
    import pandas as pd

    data = require_2dmd()
    src = pd.read_csv(data / "mos2_8x8.csv", usecols=["id", "defects"])
    shipped = pd.read_csv(PLACEMENTS)
    assert shipped["id"].tolist() == src["id"].tolist()
    assert shipped["defects"].tolist() == [_mapped(t) for t in src["defects"]]
    mos2 = read_placements(data / "mos2_8x8.csv", MOS2)
    wse2 = read_placements(PLACEMENTS, WSE2)
    np.testing.assert_array_equal(wse2.states, mos2.states)  # same site, same defect-kind code
    # 2DMD's rows are pairwise inequivalent: add random symmetry images and inequivalent
    # near-misses (one defect moved) of some rows, so that classes repeat
    canon_m, canon_w = Canonicalizer(MOS2), Canonicalizer(WSE2)
    some = mos2.states[::5]
    x = np.concatenate([mos2.states, canon_m.random_images(some, 3).images,
                        canon_m.negatives(some, seed=4).negatives])
    part = _partition(canon_w.canonicalize(x).keys)
    np.testing.assert_array_equal(part, _partition(canon_m.canonicalize(x).keys))
    n = len(mos2.states)
    assert len(np.unique(part[:n])) == n  # every 2DMD row is its own class, on both lattices
    np.testing.assert_array_equal(part[n : n + len(some)], part[:n:5])  # images join their row
    assert len(np.unique(part)) < len(part)


# --------------------------------------------------------------------------- shipped models
def test_shipped_wse2_embedder_is_invariant() -> None:
    from defectspace.ml.embedder import Embedder

    emb = Embedder.load(EMBEDDER, lattice=WSE2)
    assert emb.lattice.same_as(WSE2) and emb.dim == 12
    assert emb.encoder.config.architecture == "equivariant"
    rng = np.random.default_rng(5)
    x = np.concatenate([random_placements(WSE2, 200, (1, 3), rng),
                        random_placements(WSE2, 200, (4, 24), rng)])
    canon = Canonicalizer(WSE2)
    assert_invariant(emb.embed, x, canon, seed=11, atol=1e-4)
    neg = canon.negatives(x, seed=12)
    gap = np.linalg.norm(emb.embed(x) - emb.embed(neg.negatives), axis=1)[neg.kind >= 0]
    assert gap.min() > 1e-3  # inequivalent partners lie far beyond float rounding
    assert np.median(gap) > 0.1
    metrics = emb.metadata["metrics"]
    assert metrics["low"]["accuracy"] == 1.0 and metrics["high"]["accuracy"] == 1.0


def test_shipped_wse2_fe_predictor_predicts_with_std() -> None:
    from defectspace.predict import PropertyPredictor

    model = PropertyPredictor.load(FE_MODEL)
    assert model.lattice is not None and model.lattice.same_as(WSE2)
    assert model.target == "formation_energy_per_site" and model.extensive
    x = read_placements(PLACEMENTS, WSE2).states[:: 257]
    mean, std = model.predict_with_std(x, WSE2)
    assert mean.shape == std.shape == (len(x),)
    assert np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()
    assert 0.0 < float(np.median(mean)) < 6.0  # eV per defect
    with pytest.raises(ValueError):
        model.predict(x, MOS2)  # a WSe2 model refuses MoS2 placements


def test_predict_and_embed_select_shipped_models_by_name(tmp_path: Path) -> None:
    inp = tmp_path / "in.csv"
    inp.write_text("id,defects\na,vac:1:Se->V\nb,sub:0:W->Mo;vac:4:Se->V\n", encoding="utf-8")
    env_py = [sys.executable, "-m", "defectspace"]
    out = tmp_path / "p.csv"
    r = subprocess.run([*env_py, "predict", str(inp), "-o", str(out), "--model",
                        "wse2_8x8_formation_energy_per_site"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with open(out, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["id"] for r in rows] == ["a", "b"]
    assert all(np.isfinite(float(r["formation_energy_per_site_std"])) for r in rows)
    out = tmp_path / "e.csv"
    r = subprocess.run([*env_py, "embed", str(inp), "-o", str(out), "--model", "wse2_8x8"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "emb_11" in out.read_text(encoding="utf-8").splitlines()[0]


# --------------------------------------------------------------------------- label on WSe2
class _FakeEnergy:
    """An energy engine whose energy is a sum over elements, recording the lattice its references
    were asked for."""

    name = "fake"
    kind = "energy"
    asked: ClassVar[list[Any]] = []

    def setup(self) -> None:
        pass

    def version(self) -> str:
        return "fake 1"

    def settings(self) -> dict[str, Any]:
        return {}

    def compute(self, atoms: Atoms) -> dict[str, float]:
        assert set(atoms.get_chemical_symbols()) <= {"W", "Se", "Mo", "S"}
        return {"energy": -0.1 * float(atoms.numbers.sum())}

    def references(self, lattice: Lattice | None = None) -> References:
        _FakeEnergy.asked.append(lattice)
        assert lattice is not None
        pristine = np.zeros(lattice.n_sites, dtype=np.uint8)
        from defectspace.structure import placement_to_atoms

        e = -0.1 * float(placement_to_atoms(pristine, lattice).numbers.sum())
        return References(mu={"Mo": -4.2, "S": -1.6, "W": -7.4, "Se": -3.4}, e_pristine=e, details={})


def _two_rows(tmp_path: Path) -> Path:
    path = tmp_path / "wse2.csv"
    with open(PLACEMENTS, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "defects"])
        for r in (rows[0], rows[-1]):  # a high- and a low-density row
            w.writerow([r["id"], r["defects"]])
    return path


def test_label_builds_wse2_structures_from_placements(tmp_path: Path) -> None:
    inp, out = _two_rows(tmp_path), tmp_path / "fake_wse2.csv"
    _FakeEnergy.asked = []
    counts = L.label_structures(inp, out, _FakeEnergy(), workers=1, progress=False, lattice=WSE2)
    assert counts["ok"] == 2 and counts["failed"] == 0
    assert len(_FakeEnergy.asked) == 1 and _FakeEnergy.asked[0].same_as(WSE2)
    meta = json.loads(L.sidecar_path(out).read_text(encoding="utf-8"))
    assert meta["lattice"]["name"] == "WSe2" and "built from the placements" in meta["structures"]
    table = read_placements(inp, WSE2)
    refs = _FakeEnergy().references(WSE2)
    for row, states in zip(L.read_label_csv(out), table.states, strict=True):
        defects = to_defects(states[None, :], WSE2)[0]
        energy = float(row["energy"])
        assert int(row["n_atoms"]) == WSE2.n_sites - sum(d.species == "V" for d in defects)
        e_f = formation_energy(energy, refs.e_pristine, defects, refs.mu)
        assert float(row["formation_energy_per_site"]) == pytest.approx(e_f / len(defects), abs=1e-5)
    # resumable as on MoS2: a second run computes nothing
    assert L.label_structures(inp, out, _FakeEnergy(), workers=1, progress=False,
                              lattice=WSE2)["computed"] == 0


def test_label_on_wse2_refuses_mos2_defects(tmp_path: Path) -> None:
    inp = tmp_path / "mos2.csv"
    inp.write_text("id,defects\na,vac:1:S->V\n", encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "defectspace", "label", str(inp), "-o",
                        str(tmp_path / "o.csv"), "--engine", "sevenn", "--lattice", "WSe2",
                        "--limit", "0", "--no-progress"], capture_output=True, text=True)
    assert r.returncode == 2 and "line 2" in r.stderr


@pytest.mark.slow
def test_sevenn_label_on_wse2_reproduces_shipped_rows(tmp_path: Path) -> None:
    """``label --lattice WSe2 --engine sevenn`` on two placements, with the shipped sidecar's
    references (so the engine's reference relaxations are not redone), gives the shipped rows."""
    pytest.importorskip("sevenn")
    shipped = {r["id"]: r for r in L.read_label_csv(LABELS / "sevenn_wse2_8x8.csv")
               if r["status"] == "ok"}
    with open(PLACEMENTS, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    chosen = [r for r in rows if r["id"] in shipped][:2]
    assert len(chosen) == 2
    inp = tmp_path / "two.csv"
    with open(inp, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "defects"])
        w.writerows([r["id"], r["defects"]] for r in chosen)
    out = tmp_path / "sevenn_wse2.csv"
    shutil.copy(LABELS / "sevenn_wse2_8x8.json", L.sidecar_path(out))
    r = subprocess.run([sys.executable, "-m", "defectspace", "label", str(inp), "-o", str(out),
                        "--engine", "sevenn", "--lattice", "WSe2", "--supercell", "8x8",
                        "--workers", "1", "--no-progress"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got = L.read_label_csv(out)
    assert [g["status"] for g in got] == ["ok", "ok"]
    for g in got:
        want = shipped[g["id"]]
        for col in ("energy", "formation_energy_per_site"):
            assert float(g[col]) == pytest.approx(float(want[col]), abs=2e-3)
