"""The shipped property-aware embedder (``--model mos2_8x8_property``): a second 12-number model,
trained with the contrastive loss plus property heads, beside the paper's faithful one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("safetensors")

from defectspace import Canonicalizer, Lattice
from defectspace.ml.embedder import DEFAULT_MODEL_DIR, Embedder
from helpers import assert_invariant, require_2dmd

PROPERTY_MODEL = DEFAULT_MODEL_DIR.parent / "mos2_8x8_property"
LAT = Lattice.preset("MoS2", (8, 8))


@pytest.fixture(scope="module")
def model() -> Embedder:
    return Embedder.load(PROPERTY_MODEL)


def test_property_model_records_its_heads_and_rows(model: Embedder) -> None:
    """What the heads learned from is in the checkpoint: every 2DMD row's SevenNet-0 formation
    energy, the DFT rows, all 500 high-density GFN1-xTB gaps; no benchmark split held out."""
    rec = model.metadata["training"]["train_with_properties"]
    heads = rec["heads"]
    assert heads["formation_energy_per_site_sevenn"]["rows"] == 6433
    assert heads["formation_energy_per_site_dft"]["rows"] == 148
    assert heads["homo_lumo_gap_dft"]["rows"] == 2300
    assert heads["homo_lumo_gap_xtb"]["rows"] == 500
    assert rec["excluded_split"] is None
    assert sum(p.stat().st_size for p in PROPERTY_MODEL.iterdir()) < 1_000_000


def test_property_model_is_invariant_and_tells_classes_apart(model: Embedder) -> None:
    canon = Canonicalizer(LAT)
    x = np.concatenate([canon.sample({"S->V": 3}, 40, seed=1),
                        canon.sample({"Mo->W": 4, "S->V": 8, "S->Se": 6}, 40, seed=2)])
    assert_invariant(model.embed, x, canon, seed=5, atol=2e-5)
    keys = canon.keys(x)
    distinct = np.unique(keys, axis=0, return_index=True)[1]
    e = model.embed(x[distinct]).astype(np.float64)
    d = np.sqrt(((e[:, None] - e[None]) ** 2).sum(-1))
    assert d[~np.eye(len(e), dtype=bool)].min() > 1e-3  # inequivalent classes stay apart


def test_property_model_carries_the_gap_where_the_faithful_one_does_not(model: Embedder) -> None:
    """A linear readout of the 12 numbers explains the DFT gap of 2DMD's low-density rows
    (fitted on half, scored on the other half) far better than the faithful model's."""
    import pandas as pd
    from defectspace.placement import parse_2dmd

    data = require_2dmd()
    d = pd.read_csv(data / "mos2_8x8.csv", dtype={"id": str})
    d = d[(d["density"] == "low") & d["homo_lumo_gap"].notna()].sample(1000, random_state=0)
    x = parse_2dmd(d["defects"].tolist(), LAT)
    y = d["homo_lumo_gap"].to_numpy(float)

    def held_out_r2(e: np.ndarray) -> float:
        a = np.c_[e, np.ones(len(e))]
        w = np.linalg.lstsq(a[:500], y[:500], rcond=None)[0]
        r = y[500:] - a[500:] @ w
        return 1 - float(r.var() / y[500:].var())

    ours = held_out_r2(model.embed(x).astype(np.float64))
    faithful = held_out_r2(Embedder.load().embed(x).astype(np.float64))
    assert ours > 0.9 and ours > faithful + 0.25, (ours, faithful)  # measured 0.97 and 0.61


def test_embed_selects_the_property_model_by_name(tmp_path: Path) -> None:
    inp = tmp_path / "in.csv"
    inp.write_text("id,defects\na,vac:1:S->V\nb,sub:0:Mo->W;vac:4:S->V\n", encoding="utf-8")
    out = tmp_path / "e.csv"
    r = subprocess.run([sys.executable, "-m", "defectspace", "embed", str(inp), "-o", str(out),
                        "--model", "mos2_8x8_property"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    import pandas as pd

    got = pd.read_csv(out)
    x = np.zeros((2, LAT.n_sites), dtype=np.uint8)
    x[0, 1] = x[1, 4] = LAT.kind("S", "V").code
    x[1, 0] = LAT.kind("Mo", "W").code
    want = Embedder.load(PROPERTY_MODEL).embed(x)
    np.testing.assert_allclose(got[[f"emb_{i}" for i in range(12)]].to_numpy(), want, atol=1e-5)
