from __future__ import annotations

from dataclasses import astuple
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from defectspace import descriptors as desc
from defectspace.canonical import Canonicalizer
from defectspace.lattice import Lattice
from defectspace.placement import format_2dmd, parse_2dmd, random_placements
from defectspace.predict import (
    PropertyPredictor,
    default_model_paths,
    load_default,
    make_regressor,
    predict_properties,
)
from helpers import assert_invariant, require_2dmd

LAT = Lattice.preset("MoS2", (8, 8))


def _sample(n: int, seed: int) -> np.ndarray:
    c = Canonicalizer(LAT)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        counts = {"S->V": int(rng.integers(0, 3)), "Mo->W": int(rng.integers(0, 3)),
                  "S->Se": int(rng.integers(0, 2)), "Mo->V": int(rng.integers(0, 2))}
        if sum(counts.values()) == 0:
            counts["S->V"] = 1
        rows.append(c.sample(counts, 1, seed * 1000 + i)[0])
    return np.array(rows, dtype=np.uint8)


def _data_rows(n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    data = require_2dmd()
    d = pd.read_csv(data / "mos2_8x8.csv", dtype={"id": str})
    d = d[d["homo_lumo_gap"].notna()].iloc[:n]
    return parse_2dmd(d["defects"].tolist(), LAT), d["homo_lumo_gap"].to_numpy(float)


def test_descriptor_shapes() -> None:
    x = _sample(3, 0)
    assert desc.coulomb_matrix(x, LAT).shape == (3, 36864)
    assert desc.bag_of_bonds(x, LAT).shape == (3, 18336)
    assert desc.descriptor_size("cm", LAT) == 36864 and desc.descriptor_size("bob", LAT) == 18336
    assert desc.polynomial_features(np.ones((2, 12))).shape == (2, 91)
    h = desc.defect_histogram(x, LAT)
    assert h.shape == (3, len(desc.histogram_feature_names(LAT)))
    assert np.array_equal(h[:, :4], np.stack([(x == k).sum(1) for k in range(1, 5)], axis=1))


def test_descriptor_invariances() -> None:
    x = _sample(8, 1)
    c = Canonicalizer(LAT)
    # bag of bonds and the histogram are invariant under every lattice symmetry
    assert_invariant(lambda s: desc.bag_of_bonds(s, LAT), x, c, seed=3, atol=1e-3)
    y, ops = astuple(assert_invariant(lambda s: desc.defect_histogram(s, LAT), x, c, seed=3))
    # the periodic Coulomb matrix of an image is the same matrix with sites permuted
    cx = desc.coulomb_matrix(x, LAT, periodic=True, flatten=False, dtype=np.float64)
    cy = desc.coulomb_matrix(y, LAT, periodic=True, flatten=False, dtype=np.float64)
    perms = LAT.symmetry().permutations
    for r in range(len(x)):
        p = perms[ops[r]]
        assert np.allclose(cy[r][np.ix_(p, p)], cx[r])
        assert np.allclose(np.linalg.eigvalsh(cx[r]), np.linalg.eigvalsh(cy[r]))
    # vacancies have zero charge: their CM row is zero
    vac = np.argwhere(x[0] == 1)
    if len(vac):
        assert np.all(cx[0][vac[0][0]] == 0)


@pytest.mark.parametrize("size", [(8, 8), (3, 5)])
def test_histogram_kernel_matches_a_plain_python_reference(size: tuple[int, int]) -> None:
    lat = LAT.with_supercell(size)
    x = random_placements(lat, 40, (0, lat.n_sites // 3), np.random.default_rng(5))
    h = desc.defect_histogram(x, lat)
    names = desc.histogram_feature_names(lat)
    column = {n: i for i, n in enumerate(names)}
    d = np.round(lat.minimum_image_distances(), 3)
    labels = [k.label for k in lat.kinds]
    for r in range(len(x)):
        ref = np.zeros(len(names))
        sites = np.flatnonzero(x[r])
        for s in sites:
            ref[x[r, s] - 1] += 1
        for i, a in enumerate(sites):
            for b in sites[i + 1:]:
                ka, kb = sorted((int(x[r, a]), int(x[r, b])))
                ref[column[f"pair:{labels[ka - 1]}|{labels[kb - 1]}@{d[a, b]:.3f}"]] += 1
                for ell in (1.5, 3.0, 6.0):
                    ref[column[f"damped:{labels[ka - 1]}|{labels[kb - 1]}/{ell}"]] += np.exp(-d[a, b] / ell)
        np.testing.assert_allclose(h[r], ref, rtol=1e-9, atol=1e-12)


def test_histogram_kernel_threads_and_bad_input() -> None:
    from defectspace import _core

    x = _sample(50, 4)
    shell, feature = desc._histogram_tables(LAT)
    w = desc._damping_weights(LAT)
    one = _core.defect_pair_histogram(x, shell, feature, w, 1)
    np.testing.assert_array_equal(one, _core.defect_pair_histogram(x, shell, feature, w, 2))
    bad = x.copy()
    bad[3, 0] = 9  # no such defect kind
    with pytest.raises(ValueError, match="code 9 at site 0 of row 3"):
        _core.defect_pair_histogram(bad, shell, feature, w)
    with pytest.raises(ValueError, match="dtype"):
        _core.defect_pair_histogram(x.astype(np.int64), shell, feature, w)


def test_periodic_distances_are_true_minimum_images() -> None:
    d = desc.periodic_distances(LAT)
    assert np.allclose(d, d.T)
    nn = np.sort(d[0])[1]  # nearest neighbour of a Mo site: S at ~2.41 A
    assert 2.3 < nn < 2.5
    assert d.max() < LAT.supercell_cell[0, 0]  # never longer than a supercell vector


@pytest.mark.parametrize("target", ["homo_lumo_gap", "formation_energy_per_site"])
def test_shipped_predictors_are_invariant_under_symmetry(target: str) -> None:
    model = load_default(target, LAT)
    assert_invariant(lambda s: model.predict(s, LAT), _sample(10, 2), Canonicalizer(LAT), seed=5,
                     atol=1e-9)
    assert model.label_source and model.lattice is not None


def test_predict_properties_api() -> None:
    x = _sample(4, 3)
    out = predict_properties(x, LAT)
    assert set(out) == {"homo_lumo_gap", "formation_energy_per_site"}
    assert all(v.shape == (4,) and np.all(np.isfinite(v)) for v in out.values())
    with pytest.raises(ValueError, match="trained for"):
        predict_properties(np.zeros((1, 48), np.uint8), Lattice.preset("MoS2", (4, 4)))


@pytest.mark.parametrize("regressor", ["ridge", "krr", "gbm"])
def test_save_load_round_trip(tmp_path: Path, regressor: str) -> None:
    x = _sample(40, 4)
    y = desc.defect_histogram(x, LAT)[:, :4] @ np.array([0.3, 0.1, 0.2, 0.05]) + 1.0
    opts = {"grid": ({"max_leaf_nodes": 7},), "max_iter": 50} if regressor == "gbm" else {}
    p = PropertyPredictor("hist", regressor, "homo_lumo_gap", label_source="synthetic",
                          regressor_options=opts).fit(x, y, LAT)
    p.save(tmp_path / "m")
    q = PropertyPredictor.load(tmp_path / "m", LAT)
    xt = _sample(7, 5)
    assert np.array_equal(p.predict(xt, LAT), q.predict(xt, LAT))
    assert q.label_source == "synthetic"


@pytest.mark.parametrize("kind", ["ridge", "krr", "gbm"])
def test_regressors_follow_scikit_learn_conventions(kind: str) -> None:
    from sklearn.base import clone

    x = _sample(40, 8)
    f = desc.defect_histogram(x, LAT)
    y = f[:, :4] @ np.array([0.3, 0.1, 0.2, 0.05]) + 1.0
    settings = {"grid": ({"max_leaf_nodes": 7},), "max_iter": 50} if kind == "gbm" else {}
    r = make_regressor(kind, **settings)
    before = r.get_params()
    assert r.fit(f, y) is r  # fit returns the regressor
    assert r.predict(f).shape == (40,) and r.get_params() == before  # fitting changes no setting
    copy = clone(r)  # scikit-learn's clone: a fresh regressor with the same settings
    assert copy.get_params() == before and not hasattr(copy, "params_") and not hasattr(copy, "coef_")
    np.testing.assert_array_equal(copy.fit(f, y).predict(f), r.predict(f))
    if "random_state" in before:
        assert r.set_params(random_state=3).get_params()["random_state"] == 3
    with pytest.raises(ValueError, match="no setting 'nonsense'"):
        r.set_params(nonsense=1)


def test_round_trip_with_engine_prior(tmp_path: Path) -> None:
    x = _sample(30, 6)
    n = (x > 0).sum(1)
    y = (desc.defect_histogram(x, LAT)[:, :4] @ np.array([3.0, 0.3, 2.5, 0.2])) / n
    p = PropertyPredictor("hist", "ridge", "formation_energy_per_site", extensive=True).fit(
        x[:20], y[:20], LAT, prior_states=x, prior_y=y + 0.1, prior_source="fake engine")
    p.save(tmp_path / "fe")
    q = PropertyPredictor.load(tmp_path / "fe")
    assert np.array_equal(p.predict(x[20:]), q.predict(x[20:]))
    assert "fake engine" in q.describe_training()


def test_refuses_other_lattice_and_corrupt_file(tmp_path: Path) -> None:
    src = default_model_paths()["homo_lumo_gap"]
    with pytest.raises(ValueError, match="trained for"):
        PropertyPredictor.load(src, Lattice.preset("MoS2", (6, 6)))
    with pytest.raises(ValueError, match="trained for"):
        PropertyPredictor.load(src, Lattice.preset("WSe2", (8, 8)))
    model = PropertyPredictor.load(src)
    with pytest.raises(ValueError, match="trained for"):
        model.predict(np.zeros((1, 192), np.uint8), Lattice.preset("WS2", (8, 8)))
    dst = tmp_path / "copy"
    dst.mkdir()
    (dst / "metadata.json").write_bytes((src / "metadata.json").read_bytes())
    data = bytearray((src / "arrays.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (dst / "arrays.npz").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        PropertyPredictor.load(dst)
    with pytest.raises(ValueError, match="no predictor checkpoint"):
        PropertyPredictor.load(tmp_path / "missing")


def test_gap_predictor_on_2dmd_rows() -> None:
    x, gap = _data_rows(200)
    pred = load_default("homo_lumo_gap").predict(x, LAT)
    # training rows (the shipped model saw them): a sanity bound, not a score
    assert np.mean(np.abs(pred - gap)) < 0.05


def test_cli_predict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from defectspace.cli import main as run

    x = _sample(5, 7)
    inp = tmp_path / "in.csv"
    pd.DataFrame({"id": [f"r{i}" for i in range(5)], "defects": format_2dmd(x, LAT)}).to_csv(
        inp, index=False)
    out = tmp_path / "out.csv"
    assert run(["predict", str(inp), "-o", str(out)]) == 0
    df = pd.read_csv(out)
    assert list(df.columns) == ["id", "homo_lumo_gap", "homo_lumo_gap_std", "homo_lumo_gap_out_of_domain",
                                "formation_energy_per_site", "formation_energy_per_site_std",
                                "formation_energy_per_site_out_of_domain"]
    assert (df["homo_lumo_gap_std"] > 0).all() and not df["homo_lumo_gap_out_of_domain"].any()
    expect = predict_properties(x, LAT)
    assert np.allclose(df["homo_lumo_gap"], expect["homo_lumo_gap"], atol=1e-6)
    err = capsys.readouterr().err
    assert "DFT" in err and "SevenNet" in err
    bad = tmp_path / "bad"
    bad.mkdir()
    assert run(["predict", str(inp), "-o", str(out), "--model", str(bad)]) == 2


def test_cli_predict_flags_and_warns_outside_the_training_domain(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The shipped models learned 1-24 defects: 40 is outside, flagged per row with a wider sigma,
    and said once on stderr."""
    from defectspace.cli import main as run

    inside = _sample(3, 3)
    dense = Canonicalizer(LAT).sample({"S->V": 20, "Mo->W": 20}, 3, seed=1)
    inp = tmp_path / "in.csv"
    x = np.vstack([inside, dense])
    pd.DataFrame({"id": [f"r{i}" for i in range(6)], "defects": format_2dmd(x, LAT)}).to_csv(inp, index=False)
    out = tmp_path / "out.csv"
    assert run(["predict", str(inp), "-o", str(out)]) == 0
    df = pd.read_csv(out)
    assert df["homo_lumo_gap_out_of_domain"].tolist() == [False] * 3 + [True] * 3
    assert df["homo_lumo_gap_std"][3:].min() > df["homo_lumo_gap_std"][:3].max()
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert any("3 of 6 placements lie outside the training domain of homo_lumo_gap" in w for w in warnings)
