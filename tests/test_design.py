"""Inverse design: exact where the space can be enumerated, proven where the model allows."""

from __future__ import annotations

import numpy as np
import pytest
from defectspace import Canonicalizer, Lattice, composition
from defectspace.pipeline.design import (
    Objective,
    PropertyWindow,
    compositions,
    design,
    n_placements,
    parse_count_ranges,
    parse_window,
    rank,
)
from defectspace.pipeline.groundstate import minimize_pair_expansion, pair_expansion
from defectspace.predict import load_predictors

pytest.importorskip("sklearn")

FE = "formation_energy_per_site"
GAP = "homo_lumo_gap"


@pytest.fixture(scope="module")
def lattice() -> Lattice:
    return Lattice.preset("MoS2", (8, 8))


@pytest.fixture(scope="module")
def predictors(lattice: Lattice) -> dict[str, object]:
    return dict(load_predictors(lattice=lattice))


def _scored(
    lattice: Lattice, predictors: dict[str, object], counts: dict[str, int]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    e = Canonicalizer(lattice).enumerate(counts)
    return e.canonical, {t: p.predict(e.canonical, lattice) for t, p in predictors.items()}  # type: ignore[attr-defined]


def test_exhaustive_design_is_the_exhaustive_ranking(lattice, predictors) -> None:
    classes, pred = _scored(lattice, predictors, {"Mo->W": 1, "S->V": 2})
    res = design(lattice, {"Mo->W": 1, "S->V": 2}, objective=Objective(FE), n=5, predictors=predictors)
    assert res.exhaustive and res.proven_optimal
    assert res.n_scored == len(classes)
    want = np.sort(pred[FE])[:5]
    got = res.mean[:, res.names.index(FE)]
    np.testing.assert_array_equal(got, want)
    c = Canonicalizer(lattice)
    assert len({bytes(k) for k in res.keys}) == 5
    np.testing.assert_array_equal(c.keys(res.states), res.keys)


@pytest.mark.slow
def test_five_vacancies_exact_top5_and_search_and_integer_program_agree(lattice, predictors) -> None:
    classes, pred = _scored(lattice, {FE: predictors[FE]}, {"S->V": 5})
    assert len(classes) == 346381
    exact = design(lattice, {"S->V": 5}, objective=Objective(FE), n=5, predictors=predictors)
    np.testing.assert_array_equal(exact.mean[:, exact.names.index(FE)], np.sort(pred[FE])[:5])
    # the stochastic search (forced) and the integer program reach the same optimum
    search = design(
        lattice,
        {"S->V": 5},
        objective=Objective(FE),
        n=5,
        predictors=predictors,
        exhaustive_limit=0,
        time_limit=20,
        seed=1,
    )
    assert not search.exhaustive
    assert search.n_scored < len(classes)
    assert len(search.optimum) == 1 and search.optimum[0].proven_optimal
    assert search.optimum[0].value == pytest.approx(pred[FE].min(), abs=1e-12)
    assert search.mean[0, search.names.index(FE)] == pytest.approx(pred[FE].min(), abs=1e-12)
    assert search.proven_optimal


def test_stochastic_search_finds_the_exhaustive_top_and_scores_each_class_once(lattice, predictors) -> None:
    counts = {"S->V": 3}
    classes, pred = _scored(lattice, predictors, counts)
    res = design(
        lattice,
        counts,
        objective=Objective(GAP, maximize=True),
        n=5,
        predictors=predictors,
        exhaustive_limit=0,
        time_limit=5,
        prove=False,
        chains=64,
    )
    assert not res.exhaustive
    assert res.n_scored <= len(classes)  # never more classes than exist: each scored once
    assert res.n_proposed > res.n_scored
    np.testing.assert_allclose(res.mean[:, res.names.index(GAP)], np.sort(pred[GAP])[::-1][:5])


def test_every_design_has_the_composition_distinct_keys_and_repredicts_inside(lattice, predictors) -> None:
    window = PropertyWindow(GAP, 0.9, 1.0)
    res = design(
        lattice,
        {"Mo->W": 2, "S->V": 6},
        targets=[window],
        n=10,
        predictors=predictors,
        time_limit=4,
        chains=64,
    )
    assert len(res.states) == 10 and res.in_window.all()
    comp = composition(res.states, lattice)
    w, v = lattice.kind("Mo", "W").code, lattice.kind("S", "V").code
    assert (comp[:, w] == 2).all() and (comp[:, v] == 6).all()
    assert (comp[:, 1:].sum(axis=1) == 8).all()
    assert len({bytes(k) for k in res.keys}) == 10
    again = predictors[GAP].predict(res.states, lattice)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(again, res.mean[:, res.names.index(GAP)])
    assert ((again >= 0.9) & (again <= 1.0)).all()
    # ranked by the probability of lying in the window
    assert (np.diff(res.p_window) <= 1e-12).all()
    df = res.to_frame()
    assert list(df.columns[:4]) == ["id", "defects", "canonical_key", "orbit_size"]
    assert {GAP, f"{GAP}_std", FE, f"{FE}_std", "p_window", "in_window"} <= set(df.columns)


def test_designs_are_no_surer_than_a_random_placement_of_their_composition(lattice, predictors) -> None:
    """A search for classes likely inside a window selects for a small ensemble spread, where the
    calibrated sigma no longer holds: 24-defect designs were given 7-10 meV against GFN1-xTB errors of
    61-77 meV RMS, and a p_window near 1. Every design's sigma is now at least the median sigma of
    random placements of its composition."""
    counts = {"Mo->V": 2, "Mo->W": 3, "S->V": 7, "S->Se": 7}
    res = design(lattice, counts, targets=[PropertyWindow(GAP, 0.35, 0.45)], n=10, predictors=predictors,
                 time_limit=4, chains=64)
    sample = Canonicalizer(lattice).sample(counts, 256, 12345)
    _, sigma = predictors[GAP].predict_with_std(sample, lattice)  # type: ignore[attr-defined]
    floor = float(np.median(sigma))
    std = res.std[:, res.names.index(GAP)]
    assert (std >= floor - 1e-12).all()
    assert np.isclose(std.min(), floor)  # the search found classes the calibration deemed surer
    assert (res.p_window < 0.99).all()


def test_a_window_nothing_reaches_returns_the_closest_classes(lattice, predictors) -> None:
    res = design(lattice, {"S->V": 2}, targets=[PropertyWindow(GAP, 40.0, 41.0)], n=3, predictors=predictors)
    assert res.exhaustive and res.n_feasible == 0
    assert not res.in_window.any() and (res.distance > 0).all()
    _, pred = _scored(lattice, predictors, {"S->V": 2})
    np.testing.assert_allclose(res.mean[:, res.names.index(GAP)], np.sort(pred[GAP])[::-1][:3])


def test_count_ranges_expand_to_every_composition(lattice) -> None:
    ranges = parse_count_ranges("Mo->W=1,S->V=2..4")
    assert ranges == {"Mo->W": (1, 1), "S->V": (2, 4)}
    comps = compositions(lattice, ranges)
    v = lattice.kind("S", "V").code
    assert [int(c[v]) for c in comps] == [2, 3, 4]
    assert n_placements(comps[0], lattice) == 64 * 128 * 127 // 2


def test_integer_program_matches_the_enumerated_minimum(lattice, predictors) -> None:
    fe = predictors[FE]
    expansion = pair_expansion(fe)
    assert expansion is not None
    x = Canonicalizer(lattice).sample({"Mo->V": 1, "Mo->W": 2, "S->V": 3, "S->Se": 2}, 40, seed=3)
    np.testing.assert_allclose(expansion.predict(x, lattice), fe.predict(x, lattice), atol=1e-12)  # type: ignore[attr-defined]
    _, pred = _scored(lattice, {FE: fe}, {"Mo->W": 1, "S->V": 2})
    g = minimize_pair_expansion(expansion, lattice, {"Mo->W": 1, "S->V": 2}, time_limit=60)
    assert g.proven_optimal
    assert g.value == pytest.approx(pred[FE].min(), abs=1e-12)
    assert g.bound <= g.value + 1e-9
    top = minimize_pair_expansion(expansion, lattice, {"Mo->W": 1, "S->V": 2}, maximize=True)
    assert top.value == pytest.approx(pred[FE].max(), abs=1e-12)
    assert pair_expansion(predictors[GAP]) is None  # trees are not a pair expansion


def test_rank_prefers_likely_candidates() -> None:
    mean = np.array([[0.95], [0.95], [0.80]])
    std = np.array([[0.01], [0.2], [0.01]])
    order, inside, p, dist = rank(mean, std, ["g"], [PropertyWindow("g", 0.9, 1.0)], None)
    assert order.tolist() == [0, 1, 2]
    assert inside.tolist() == [True, True, False]
    assert p[0] > p[1] > p[2] and dist[2] == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("homo_lumo_gap=0.95:0.90", "empty"),
        ("homo_lumo_gap=0.9", "looks like"),
        ("homo_lumo_gap=a:b", "must be numbers"),
        ("=0.1:0.2", "looks like"),
        ("gap=nan:1", "finite"),
    ],
)
def test_malformed_windows_are_refused(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_window(text)


def test_bad_design_requests_are_refused(lattice, predictors) -> None:
    with pytest.raises(ValueError, match="no model predicts 'band_gap'"):
        design(lattice, {"S->V": 2}, targets=[PropertyWindow("band_gap", 0, 1)], predictors=predictors)
    with pytest.raises(ValueError, match="do not fit"):
        design(lattice, {"Mo->W": 65}, objective=Objective(FE), predictors=predictors)
    with pytest.raises(ValueError, match="nothing to design"):
        design(lattice, {"S->V": 2}, predictors=predictors)
    with pytest.raises(ValueError, match="S->V=3"):
        parse_count_ranges("S->V=three")
    with pytest.raises(ValueError, match="empty"):
        parse_count_ranges("S->V=4..2")


def test_design_command_writes_designs_that_predict_reproduces(tmp_path, lattice) -> None:
    import pandas as pd
    from defectspace.cli import main

    out = tmp_path / "designs.csv"
    rc = main(
        [
            "design",
            "--counts",
            "Mo->W=1,S->V=2",
            "--target",
            "homo_lumo_gap=0.3:1.2",
            "--minimize",
            FE,
            "-n",
            "4",
            "-o",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 0
    df = pd.read_csv(out)
    assert len(df) == 4 and df["canonical_key"].is_unique and df["in_window"].all()
    assert (np.diff(df[FE]) >= 0).all()
    pred = tmp_path / "pred.csv"
    assert main(["predict", str(out), "-o", str(pred)]) == 0
    again = pd.read_csv(pred)
    np.testing.assert_allclose(again[FE], df[FE], rtol=0, atol=1e-12)
    np.testing.assert_allclose(again[GAP], df[GAP], rtol=0, atol=1e-12)
    assert ((again[GAP] >= 0.3) & (again[GAP] <= 1.2)).all()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--counts", "S->V=2", "--target", "homo_lumo_gap=0.95:0.90"], "is empty"),
        (["--counts", "S->V=2", "--target", "band_gap=0:1"], "no model predicts 'band_gap'"),
        (["--counts", "Mo->W=65", "--minimize", FE], "do not fit"),
        (["--counts", "S->V=2", "--target", "gap"], "a target looks like"),
        (["--counts", "S->V=2..x", "--minimize", FE], "counts items look like"),
        (["--counts", "S->V=2", "--minimize", FE, "--verify", "xtb"], "--verify and --budget go together"),
    ],
)
def test_design_command_refuses_bad_input_in_one_line(tmp_path, capsys, args, message) -> None:
    from defectspace.cli import main

    out = tmp_path / "d.csv"
    assert main(["design", *args, "-o", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0]
    assert not out.exists()


def test_decode_returns_the_exact_class_of_low_density_embeddings(tmp_path, lattice) -> None:
    pytest.importorskip("torch")
    import pandas as pd
    from defectspace.cli import main
    from defectspace.ml.decode import decode
    from defectspace.ml.embedder import Embedder

    c = Canonicalizer(lattice)
    x = np.vstack([c.sample({"Mo->W": 1, "S->V": 1}, 6, 4), c.sample({"S->Se": 2}, 6, 5)])
    emb = Embedder.load()
    v = emb.embed(x)
    res = decode(emb, v, composition(x, lattice)[:, 1:])
    np.testing.assert_array_equal(res.keys, c.keys(x))
    assert res.exact.all() and (res.distance < 1e-4).all()
    inferred = decode(emb, v[:3], infer_max_defects=2)  # every class of up to 2 defects searched
    np.testing.assert_array_equal(inferred.keys, c.keys(x[:3]))
    assert inferred.exact.all()
    # the command line: embed, then decode with a composition
    src = tmp_path / "in.csv"
    from defectspace.placement import format_2dmd

    pd.DataFrame({"id": ["a", "b"], "defects": format_2dmd(x[6:8], lattice)}).to_csv(src, index=False)
    assert main(["embed", str(src), "-o", str(tmp_path / "emb.csv")]) == 0
    assert (
        main(["decode", str(tmp_path / "emb.csv"), "--counts", "S->Se=2", "-o", str(tmp_path / "dec.csv")])
        == 0
    )
    dec = pd.read_csv(tmp_path / "dec.csv")
    assert dec["canonical_key"].tolist() == [f"ds1:{bytes(k).hex()}" for k in c.keys(x[6:8])]
    with pytest.raises(ValueError, match="vectors must have shape"):
        decode(emb, np.zeros((2, 5)))


@pytest.mark.slow
def test_verification_labels_the_best_candidates_once_and_resumes_without_recomputing(
    tmp_path, lattice, predictors
) -> None:
    pytest.importorskip("sevenn")
    window = PropertyWindow(FE, 0.80, 1.30)  # SevenNet-0 (its own chemical potentials) lies ~0.2-0.3 eV below
    work = tmp_path / "work"
    kw = dict(targets=[window], n=5, predictors=predictors, verify="sevenn", budget=3, work_dir=work)
    first = design(lattice, {"Mo->W": 1, "S->V": 2}, **kw)  # type: ignore[arg-type]
    labels = work / "sevenn_labels.csv"
    rows = labels.read_text().splitlines()
    assert len(rows) == 1 + 3  # header + exactly the budget
    assert first.engine_calls == 3 and first.verified.sum() >= 1
    df = first.to_frame()
    assert {f"{FE}_sevenn", "engine_verified", "sevenn_in_window"} <= set(df.columns)
    verified = df[df["engine_verified"]]
    # a verified class carries the engine's value, measured on exactly that class
    on_disk = dict(line.split(",")[::5][:2] for line in rows[1:])  # id -> formation_energy_per_site
    for key, value in zip(verified["canonical_key"], verified[f"{FE}_sevenn"], strict=True):
        assert float(on_disk[key]) == pytest.approx(value)
    # killed or not, a second run finds every engine result on disk and computes none again
    before = labels.read_bytes()
    again = design(lattice, {"Mo->W": 1, "S->V": 2}, **kw)  # type: ignore[arg-type]
    assert labels.read_bytes() == before
    np.testing.assert_array_equal(again.keys, first.keys)


def test_engine_values_are_checked_on_the_models_scale(lattice, predictors) -> None:
    """The shipped gap model learned GFN1-xTB gaps mapped to DFT (0.065 + 1.047 x): a verified
    xTB gap is compared with a window on the model's scale only after the same mapping."""
    from defectspace.pipeline.verification import ModelScale

    x = Canonicalizer(lattice).sample({"S->V": 2, "Mo->W": 1}, 4, seed=0)
    gap = ModelScale(predictors[GAP], "xtb", lattice)
    corr = predictors[GAP].info["engine_correction"]
    raw = np.array([0.1, 0.2, 0.3, 0.4])
    np.testing.assert_allclose(gap(raw, x), corr["intercept"] + corr["slope"] * raw)
    assert "0.065" in gap.describe() and "1.047" in gap.describe()
    # another engine's correction does not apply; SevenNet-0's is per defect kind
    np.testing.assert_array_equal(ModelScale(predictors[GAP], "chgnet", lattice)(raw, x), raw)
    fe = ModelScale(predictors[FE], "sevenn", lattice)
    per_kind = np.asarray(predictors[FE].info["engine_correction"]["per_kind"])
    counts = np.stack([(x == k.code).sum(axis=1) for k in lattice.kinds], axis=1)
    slope = predictors[FE].info["engine_correction"]["slope"]
    expected = slope * raw + counts @ per_kind / counts.sum(axis=1)
    np.testing.assert_allclose(fe(raw, x), expected)


def test_a_restarted_design_reuses_every_engine_label_it_finds(tmp_path, lattice, predictors, monkeypatch) -> None:
    """The search is timed, so a restarted design may not meet the classes it sent to the engine
    before: they are put back into its archive, counted against the budget, and not computed again."""
    from defectspace.pipeline import verification

    computed: list[str] = []

    def fake_engine(candidates, output, engine, workers, ids, loader) -> None:  # type: ignore[no-untyped-def]
        import pandas as pd

        defects = pd.read_csv(candidates, dtype=str, keep_default_na=False).set_index("id")["defects"]
        new = not output.exists()
        with open(output, "a", encoding="utf-8") as fh:
            if new:
                fh.write("id,status,homo_lumo_gap\n")
            for i in ids:  # a gap that depends on the class: 0.8 eV plus 0.01 per character of its defects
                fh.write(f"{i},ok,{0.8 + 0.01 * (len(defects[i]) % 20)}\n")
                computed.append(i)

    monkeypatch.setattr(verification, "_label", fake_engine)
    kw = dict(targets=[PropertyWindow(GAP, 0.9, 1.0)], n=4, predictors=predictors, verify="xtb",
              budget=4, work_dir=tmp_path, chains=64)
    first = design(lattice, {"Mo->W": 2, "S->V": 6}, time_limit=2, seed=0, **kw)  # type: ignore[arg-type]
    assert len(computed) == 4 and first.engine_calls == 4
    again = design(lattice, {"Mo->W": 2, "S->V": 6}, time_limit=1, seed=7, **kw)  # type: ignore[arg-type]
    assert len(computed) == 4  # nothing computed again
    assert again.engine_calls == 4
    labelled = {bytes(k) for k, v in zip(first.keys, first.verified, strict=True) if v}
    assert labelled <= {bytes(k) for k, v in zip(again.keys, again.verified, strict=True) if v}


def test_design_says_how_many_engine_calls_gave_no_value(tmp_path, lattice, predictors, monkeypatch) -> None:
    """A failed calculation (or a worker that died) is a row with its reason, not a value: the
    summary counts such calls and names the file with the reasons, instead of passing over them."""
    from defectspace.pipeline import verification

    calls: list[str] = []

    def flaky_engine(candidates, output, engine, workers, ids, loader) -> None:  # type: ignore[no-untyped-def]
        new = not output.exists()
        with open(output, "a", encoding="utf-8") as fh:
            if new:
                fh.write("id,status,homo_lumo_gap,error\n")
            for i in ids:
                calls.append(i)
                if len(calls) % 2 == 0:  # every second calculation fails
                    fh.write(f"{i},failed,,WorkerDied: the worker process ended\n")
                else:
                    fh.write(f"{i},ok,0.95,\n")

    monkeypatch.setattr(verification, "_label", flaky_engine)
    res = design(lattice, {"Mo->W": 2, "S->V": 6}, targets=[PropertyWindow(GAP, 0.9, 1.0)], n=4,
                 predictors=predictors, verify="xtb", budget=4, work_dir=tmp_path, chains=64,
                 time_limit=2, seed=0)
    assert res.engine_calls == 4 and res.engine_failures == 2
    assert "2 of 4 engine calls gave no value" in res.summary()
    assert str(tmp_path / "xtb_labels.csv") in res.summary()
