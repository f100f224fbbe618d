"""Uncertainty and training domain of the property predictors: ensembles, the ridge posterior,
calibration, domain flags, and the shipped models' predict_with_std."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from defectspace import descriptors as desc
from defectspace.canonical import Canonicalizer
from defectspace.lattice import Lattice
from defectspace.placement import random_placements
from defectspace.predict import (
    EnsembleRegressor,
    PropertyPredictor,
    RidgeRegressor,
    TrainingDomain,
    describe_domain,
    fit_calibration,
    interval_coverage,
    load_default,
    make_regressor,
)
from defectspace.predict.domain import COMPOSITION, COUNT, PAIRS
from helpers import assert_invariant

pytest.importorskip("sklearn")

LAT = Lattice.preset("MoS2", (8, 8))
GAP = "homo_lumo_gap"
FE = "formation_energy_per_site"


def _placements(n: int, defects: tuple[int, int], seed: int) -> np.ndarray:
    return random_placements(LAT, n, defects, np.random.default_rng(seed))


def _toy_total(x: np.ndarray) -> np.ndarray:
    """A pair cluster expansion with a little noise: a total that grows with the defects."""
    h = desc.defect_histogram(x, LAT)
    rng = np.random.default_rng(1)
    w = np.zeros(h.shape[1])
    w[:4] = [3.0, 0.3, 2.5, 0.2]
    w[4:40] = rng.normal(0, 0.05, 36)
    return h @ w + rng.normal(0, 0.01, len(x))


# --------------------------------------------------------------------------- regressors
def test_ensemble_mean_is_the_weighted_members_and_round_trips(tmp_path: Path) -> None:
    x = _placements(80, (1, 6), 0)
    f = desc.rich_descriptor(x, LAT)
    y = _toy_total(x)
    b = desc.rich_blocks(LAT)
    r = make_regressor("ensemble", members=[
        {"kind": "ridge", "copies": 3},
        {"kind": "gbm", "settings": {"grid": ({"max_leaf_nodes": 7},), "max_iter": 40},
         "columns": [list(b["hist"]), list(b["nearest"])], "copies": 2, "weight": 0.5}],
        resample="subsample")
    assert isinstance(r, EnsembleRegressor)
    r.fit(f, y)
    members = r.predict_members(f)
    assert members.shape == (5, 80)
    assert r.weights_.sum() == pytest.approx(1.0) and r.weights_[0] == pytest.approx(2 / 9)
    mean, spread = r.mean_and_spread(f)
    np.testing.assert_array_equal(mean, r.predict(f))
    assert np.all(spread >= 0) and np.any(spread > 0)
    p = PropertyPredictor("rich", "ensemble", GAP, regressor_options={"members": r.members})
    p.fit(x, y, LAT)
    p.save(tmp_path / "m")
    q = PropertyPredictor.load(tmp_path / "m")
    np.testing.assert_array_equal(q.predict(x, LAT), p.predict(x, LAT))
    with pytest.raises(ValueError, match="unknown regressor 'tree'"):
        make_regressor("ensemble", members=[{"kind": "tree"}]).fit(f, y)
    with pytest.raises(ValueError, match="columns must be"):
        make_regressor("ensemble", members=[{"kind": "ridge", "columns": [5, 2]}]).fit(f, y)


def test_ridge_posterior_matches_the_closed_form() -> None:
    rng = np.random.default_rng(3)
    f = rng.normal(size=(40, 3))
    y = f @ [1.0, -2.0, 0.5] + rng.normal(0, 0.1, 40)
    r = RidgeRegressor(alphas=(0.5,), standardize=False, fit_intercept=False).fit(f, y)
    new = rng.normal(size=(5, 3))
    cov = np.linalg.inv(f.T @ f + 0.5 * np.eye(3))
    noise = np.sqrt(np.mean((f @ r.coef_ - y) ** 2))
    want = noise * np.sqrt(np.einsum("ij,jk,ik->i", new, cov, new))
    np.testing.assert_allclose(r.predict_std(new), want, rtol=1e-10)
    # far from the data the posterior widens
    assert r.predict_std(new * 10).mean() > 5 * r.predict_std(new).mean()


def test_sample_weight_zero_is_dropping_the_row() -> None:
    rng = np.random.default_rng(4)
    f = rng.normal(size=(30, 4))
    y = f @ [1.0, 2.0, 0.0, -1.0] + rng.normal(0, 0.1, 30)
    w = np.ones(30)
    w[:5] = 0.0
    a = RidgeRegressor(alphas=(0.1,)).fit(f, y, sample_weight=w)
    b = RidgeRegressor(alphas=(0.1,)).fit(f[5:], y[5:])
    np.testing.assert_allclose(a.coef_, b.coef_, atol=1e-10)
    with pytest.raises(ValueError, match="sample_weight must be 30"):
        RidgeRegressor().fit(f, y, sample_weight=-w)


def test_linear_ensemble_is_one_linear_model_and_a_pair_expansion() -> None:
    from defectspace.pipeline.groundstate import pair_expansion

    x = _placements(60, (1, 8), 5)
    y = _toy_total(x) / (x > 0).sum(1)
    p = PropertyPredictor("hist", "ensemble", FE, extensive=True, regressor_options={
        "members": [{"kind": "ridge"}], "n_copies": 4}).fit(x, y, LAT)
    assert isinstance(p.model, EnsembleRegressor)
    _, const = p.model.linear_coefficients()  # type: ignore[misc]
    assert const == 0.0  # an extensive target has no constant term
    xt = _placements(20, (1, 10), 6)
    expansion = pair_expansion(p)
    assert expansion is not None
    np.testing.assert_allclose(expansion.predict(xt, LAT), p.predict(xt, LAT), rtol=0, atol=1e-9)


# --------------------------------------------------------------------------- calibration
def test_calibration_covers_fresh_heteroscedastic_residuals() -> None:
    rng = np.random.default_rng(7)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        spread = rng.uniform(0.01, 0.1, n)
        nd = rng.integers(1, 20, n)
        sigma = 2.0 * spread * np.sqrt(nd)
        return rng.normal(0, sigma), spread, nd

    r, s, nd = draw(4000)
    cal = fit_calibration(r, s, nd, ood_std=0.5)
    assert cal.coef[1] == pytest.approx(1.0, abs=0.15) and cal.coef[2] == pytest.approx(0.5, abs=0.1)
    r2, s2, nd2 = draw(4000)
    cov = interval_coverage(r2, np.zeros_like(r2), cal.std(s2, nd2))
    assert cov["68%"] == pytest.approx(0.683, abs=0.03) and cov["95%"] == pytest.approx(0.954, abs=0.02)
    wide = cal.std(s2[:3], nd2[:3], out_of_domain=[True, False, True])
    base = cal.std(s2[:3], nd2[:3])
    np.testing.assert_allclose(wide[[0, 2]], np.sqrt(base[[0, 2]] ** 2 + 0.25))
    assert wide[1] == base[1]
    # defect counts and spreads beyond the calibration's ranges are clipped, not extrapolated
    assert cal.std([0.05], [500])[0] == cal.std([0.05], [cal.n_defects[1]])[0]
    assert cal.spread_max == pytest.approx(s.max())
    assert cal.std([50.0], [5])[0] == cal.std([cal.spread_max], [5])[0]
    with pytest.raises(ValueError, match="at least 2 finite"):
        fit_calibration([np.nan, 1.0], [0.1, 0.1], [1, 1], 0.1)


def test_predictor_calibrates_on_out_of_fold_rows(tmp_path: Path) -> None:
    x = _placements(120, (1, 8), 8)
    y = _toy_total(x) / (x > 0).sum(1)
    p = PropertyPredictor("hist", "ridge", FE, extensive=True).fit(x, y, LAT, calibration_folds=4)
    assert p.calibration is not None and p.calibration.n_rows == 120
    assert p.info["cv_mae_meV"] == pytest.approx(1000 * p.calibration.oof_mae)
    xt = _placements(30, (1, 8), 9)
    mean, std = p.predict_with_std(xt, LAT)
    np.testing.assert_array_equal(mean, p.predict(xt, LAT))  # the same mean, bit for bit
    assert np.all(np.isfinite(std)) and np.all(std > 0)
    p.save(tmp_path / "fe")
    q = PropertyPredictor.load(tmp_path / "fe")
    m2, s2 = q.predict_with_std(xt, LAT)
    np.testing.assert_array_equal(m2, mean)
    np.testing.assert_array_equal(s2, std)
    assert "calibrated uncertainty" in q.describe_training()


# --------------------------------------------------------------------------- domain
def test_domain_flags_each_reason() -> None:
    c = Canonicalizer(LAT)
    train = np.concatenate([c.sample({"S->V": 2}, 30, seed=1), c.sample({"S->V": 3}, 30, seed=2)])
    dom = TrainingDomain.from_histogram(desc.defect_histogram(train, LAT), LAT)
    assert dom.n_defects == (2, 3) and dom.max_count == (0, 0, 3, 0)
    inside = train[:5]
    many = c.sample({"S->V": 6}, 3, seed=3)
    other_kind = c.sample({"Mo->W": 1, "S->V": 1}, 3, seed=4)
    flags = dom.flags(desc.defect_histogram(np.concatenate([inside, many, other_kind]), LAT))
    assert (flags[:5] == 0).all()
    assert ((flags[5:8] & COUNT) > 0).all() and ((flags[5:8] & COMPOSITION) > 0).all()
    assert ((flags[8:] & COMPOSITION) > 0).all() and ((flags[8:] & PAIRS) > 0).all()
    assert ((flags[8:] & COUNT) == 0).all()  # two defects: a count seen in training
    again = TrainingDomain.from_dict(dom.to_dict())
    np.testing.assert_array_equal(again.seen_pairs, dom.seen_pairs)
    assert again.n_defects == dom.n_defects and again.max_count == dom.max_count
    text = dom.describe(flags, "gap")
    assert text is not None and text.startswith("6 of 11 placements lie outside") and "2-3 defects" in text
    assert dom.describe(flags[:5]) is None
    # the flags are invariant under the lattice's symmetry, like the predictions
    assert_invariant(lambda s: dom.flags(desc.defect_histogram(s, LAT)),
                     np.concatenate([inside, many, other_kind]), c, seed=5)


def test_out_of_domain_placements_get_a_wider_uncertainty() -> None:
    x = _placements(150, (1, 6), 10)
    y = _toy_total(x)
    p = PropertyPredictor("hist", "gbm", GAP, regressor_options={
        "grid": ({"max_leaf_nodes": 7},), "max_iter": 60}).fit(x, y, LAT, calibration_folds=3)
    assert p.domain is not None and p.domain.n_defects[1] <= 6
    far = _placements(10, (30, 40), 11)
    assert p.out_of_domain(far, LAT).all()
    near = x[:10]
    assert not p.out_of_domain(near, LAT).any()
    _, s_near = p.predict_with_std(near, LAT)
    _, s_far = p.predict_with_std(far, LAT)
    assert s_far.min() > s_near.max()
    msg = describe_domain({GAP: p}, np.concatenate([near, far]), LAT)
    assert msg is not None and "10 of 20 placements" in msg and GAP in msg
    assert describe_domain({GAP: p}, near, LAT) is None


# --------------------------------------------------------------------------- the rich descriptor
def test_rich_descriptor_blocks_and_invariance() -> None:
    x = _placements(12, (1, 30), 12)
    r = desc.rich_descriptor(x, LAT)
    b = desc.rich_blocks(LAT)
    assert r.shape == (12, desc.descriptor_size("rich", LAT)) == (12, b["nearest"][1])
    np.testing.assert_array_equal(r[:, :b["hist"][1]], desc.defect_histogram(x, LAT))
    assert_invariant(lambda s: desc.rich_descriptor(s, LAT), x, Canonicalizer(LAT), seed=2, atol=1e-9)
    # nearest pairs: 1/r of the closest S-vacancy pair, read against the distances themselves
    d = LAT.minimum_image_distances()
    pairs = [(k1, k2) for k1 in range(1, 5) for k2 in range(k1, 5)]
    p = pairs.index((3, 3))
    near = r[:, b["nearest"][0]:]
    for row, out in zip(x, near, strict=True):
        s = np.flatnonzero(row == 3)
        if len(s) >= 2:
            dd = d[np.ix_(s, s)][np.triu_indices(len(s), 1)]
            assert out[p * 6] == pytest.approx(1 / np.round(dd.min(), 3), rel=1e-9)


# --------------------------------------------------------------------------- shipped models
@pytest.mark.parametrize("target", [GAP, FE])
def test_shipped_models_state_a_calibrated_uncertainty(target: str) -> None:
    model = load_default(target, LAT)
    assert model.calibration is not None and model.domain is not None
    x = np.concatenate([_placements(20, (1, 3), 13), _placements(20, (10, 50), 14)])
    mean, std = model.predict_with_std(x, LAT)
    np.testing.assert_array_equal(mean, model.predict(x, LAT))
    assert np.all(np.isfinite(std)) and np.all(std > 0)
    assert_invariant(lambda s: model.predict_with_std(s, LAT)[1], x, Canonicalizer(LAT), seed=3,
                     atol=1e-9)


@pytest.mark.parametrize("target", [GAP, FE])
def test_a_precomputed_histogram_gives_the_same_bits(target: str) -> None:
    model = load_default(target, LAT)
    assert model.reads_histogram
    x = _placements(50, (1, 40), 15)
    h = desc.defect_histogram(x, LAT)
    np.testing.assert_array_equal(model.predict(x, LAT, hist=h), model.predict(x, LAT))
    m1, s1 = model.predict_with_std(x, LAT, hist=h)
    m2, s2 = model.predict_with_std(x, LAT)
    np.testing.assert_array_equal(m1, m2)
    np.testing.assert_array_equal(s1, s2)
    with pytest.raises(ValueError, match="hist must be"):
        model.predict(x, LAT, hist=h[:3])


def test_ensemble_gives_a_placement_the_same_bits_in_any_batch() -> None:
    """The members were averaged by a matrix product, whose sums BLAS orders by a column's place in
    the batch: design's designs re-predicted alone differed from the search's by 1 ulp."""
    rng = np.random.default_rng(3)
    f = rng.normal(size=(300, 8))
    ens = EnsembleRegressor(members=[{"kind": "ridge", "copies": 7}], resample="bootstrap",
                            random_state=0).fit(f, f @ rng.normal(size=8) + 0.1 * rng.normal(size=300))
    whole = ens.predict(f)
    for start, stop in [(0, 1), (5, 6), (17, 50), (101, 300)]:
        np.testing.assert_array_equal(ens.predict(f[start:stop]), whole[start:stop])
        mean, spread = ens.mean_and_spread(f[start:stop])
        np.testing.assert_array_equal(mean, whole[start:stop])
        np.testing.assert_array_equal(spread, ens.mean_and_spread(f)[1][start:stop])
