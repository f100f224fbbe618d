from __future__ import annotations

import dataclasses
import functools
from dataclasses import astuple
from math import comb

import numpy as np
import pandas as pd
import pytest
from defectspace import Canonicalizer, Lattice, parse_2dmd
from defectspace.canonical import (
    KEY_FORMAT_VERSION,
    brute_force_keys,
    burnside_count,
    key_from_string,
    key_to_string,
)
from defectspace.placement import PlacementError, composition
from helpers import assert_invariant, require_2dmd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@functools.cache
def canon(supercell: tuple[int, int] = (8, 8), subgroup: str = "full") -> Canonicalizer:
    return Canonicalizer(Lattice.preset("MoS2", supercell), subgroup)


@st.composite
def placements(draw: st.DrawFn, supercell: tuple[int, int] = (8, 8), max_density: float = 0.5,
               subgroup: str = "full") -> np.ndarray:
    c = canon(supercell, subgroup)
    lat = c.lattice
    n = lat.n_sites
    density = draw(st.sampled_from([0.0, 0.02, 0.1, 0.3, max_density]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x = np.zeros(n, dtype=np.uint8)
    for s in np.flatnonzero(rng.random(n) < density):
        allowed = lat.allowed_codes(int(s))
        x[s] = allowed[rng.integers(1, len(allowed))]
    if not x.any() and draw(st.booleans()):
        s = int(rng.integers(n))
        x[s] = lat.allowed_codes(s)[1]
    return x


@given(x=placements(), g=st.integers(0, 767))
@SETTINGS
def test_key_invariant_under_every_operation(x: np.ndarray, g: int) -> None:
    c = canon()
    y = c.apply(x, g)
    assert c.keys(y).tobytes() == c.keys(x).tobytes()
    assert c.orbit_sizes(y)[0] == c.orbit_sizes(x)[0]


@given(x=placements())
@SETTINGS
def test_canonical_form_is_idempotent_in_orbit_and_reached_by_its_operation(x: np.ndarray) -> None:
    c = canon()
    res = c.canonicalize(x)
    again = c.canonicalize(res.canonical)
    np.testing.assert_array_equal(again.canonical, res.canonical)
    np.testing.assert_array_equal(c.apply(x, res.operation), res.canonical)
    np.testing.assert_array_equal(c.from_keys(res.keys), res.canonical)
    assert c.group.order % res.orbit_size[0] == 0
    # composition is kept
    np.testing.assert_array_equal(composition(res.canonical, c.lattice), composition(x, c.lattice))


@given(x=placements(), seed=st.integers(0, 2**63))
@SETTINGS
def test_orbit_size_equals_brute_force_orbit(x: np.ndarray, seed: int) -> None:
    c = canon((4, 4))
    x4 = x[: c.lattice.n_sites]
    images = c.apply(np.repeat(x4[None], c.group.order, axis=0), np.arange(c.group.order))
    distinct = {row.tobytes() for row in images}
    assert c.orbit_sizes(x4)[0] == len(distinct)


@pytest.mark.parametrize("subgroup", ["full", "translations", "no_horizontal_mirror"])
@pytest.mark.parametrize("supercell", [(4, 4), (3, 5)])
def test_keys_partition_like_numpy_brute_force(subgroup: str, supercell: tuple[int, int]) -> None:
    """Low and high density, with images of earlier rows mixed in so that classes repeat."""
    c = Canonicalizer(Lattice.preset("MoS2", supercell), subgroup)
    lat = c.lattice
    rng = np.random.default_rng(7)
    rows = []
    for density in (0.05, 0.15, 0.3, 0.6):
        for _ in range(25):
            x = np.zeros(lat.n_sites, dtype=np.uint8)
            for s in np.flatnonzero(rng.random(lat.n_sites) < density):
                allowed = lat.allowed_codes(int(s))
                x[s] = allowed[rng.integers(1, len(allowed))]
            rows.append(x)
    X = np.array(rows)
    images = c.random_images(X, seed=3).images
    X = np.concatenate([X, images, X[:, ::1]])
    ours = [k.tobytes() for k in c.keys(X)]
    brute = brute_force_keys(lat, X, subgroup)
    # same partition: a bijection between our keys and the brute-force keys
    pairs = set(zip(ours, brute, strict=True))
    assert len(pairs) == len(set(ours)) == len(set(brute))
    assert len(set(ours)) < len(X)


@given(X=st.lists(placements(), min_size=0, max_size=30))
@SETTINGS
def test_batch_equals_single_and_threads_agree(X: list[np.ndarray]) -> None:
    c = canon()
    arr = np.array(X, dtype=np.uint8).reshape(len(X), 192)
    batch = c.canonicalize(arr)
    one = Canonicalizer(c.lattice, n_threads=1)
    many = Canonicalizer(c.lattice, n_threads=8)
    for r in range(len(X)):
        single = c.canonicalize(arr[r])
        np.testing.assert_array_equal(single.keys[0], batch.keys[r])
        assert single.orbit_size[0] == batch.orbit_size[r]
    np.testing.assert_array_equal(one.keys(arr), many.keys(arr))


@pytest.mark.parametrize(
    ("counts", "subgroup"),
    [({"S->V": 3}, "full"), ({"S->V": 2, "Mo->W": 1}, "full"), ({"Mo->V": 1, "S->V": 1, "S->Se": 1}, "full"),
     ({"S->V": 3}, "no_horizontal_mirror"), ({"S->V": 2, "S->Se": 2}, "translations"),
     ({"Mo->W": 2, "Mo->V": 2}, "full")],
)
def test_enumeration_matches_burnside_and_total(counts: dict[str, int], subgroup: str) -> None:
    supercell = (8, 8) if subgroup == "full" and sum(counts.values()) <= 3 else (4, 4)
    c = Canonicalizer(Lattice.preset("MoS2", supercell), subgroup)
    e = c.enumerate(counts)
    assert len(e.orbit_size) == burnside_count(c.lattice, counts, subgroup)
    # orbit sizes add up to the number of all placements (a multinomial count)
    n_metal = n_chalc = 0
    total = 1
    for label, n in counts.items():
        if label.startswith("Mo"):
            total *= comb(c.lattice.n_cells - n_metal, n)
            n_metal += n
        else:
            total *= comb(2 * c.lattice.n_cells - n_chalc, n)
            n_chalc += n
    assert int(e.orbit_size.sum()) == total
    # each row is its own canonical form and all keys differ
    res = c.canonicalize(e.canonical)
    np.testing.assert_array_equal(res.canonical, e.canonical)
    np.testing.assert_array_equal(res.orbit_size, e.orbit_size)
    assert len({k.tobytes() for k in res.keys}) == len(e.orbit_size)


def test_three_sulfur_vacancies_8x8() -> None:
    e = canon().enumerate({"S->V": 3})
    assert len(e.orbit_size) == 497
    assert int(e.orbit_size.sum()) == comb(128, 3) == 341_376


def test_sampling_is_uniform_and_reproducible() -> None:
    c = canon((2, 2))
    counts = {"S->V": 2}
    a = c.sample(counts, 40_000, seed=5)
    np.testing.assert_array_equal(a, c.sample(counts, 40_000, seed=5))
    np.testing.assert_array_equal(a[:100], Canonicalizer(c.lattice, n_threads=1).sample(counts, 100, seed=5))
    assert not np.array_equal(a, c.sample(counts, 40_000, seed=6))
    # all C(8, 2) = 28 placements equally likely
    _, freq = np.unique(a, axis=0, return_counts=True)
    assert len(freq) == 28
    expected = 40_000 / 28
    chi2 = float(((freq - expected) ** 2 / expected).sum())
    assert chi2 < 60  # 27 dof: p ~ 3e-4
    # class frequencies follow orbit sizes
    e = c.enumerate(counts)
    dd = c.dedupe(a)
    by_key = {k.tobytes(): n for k, n in zip(dd.keys, dd.counts, strict=True)}
    for row, orbit in zip(e.canonical, e.orbit_size, strict=True):
        key = c.keys(row)[0].tobytes()
        assert abs(by_key[key] / 40_000 - orbit / 28) < 0.02


def test_dedupe_counts_and_inverse() -> None:
    c = canon()
    base = c.sample({"S->V": 2, "Mo->W": 1}, 50, seed=1)
    images = c.random_images(np.repeat(base, 3, axis=0), seed=2).images
    dd = c.dedupe(images)
    n_classes = len({k.tobytes() for k in c.keys(base)})
    assert len(dd.counts) == n_classes
    assert dd.counts.sum() == 150
    np.testing.assert_array_equal(dd.keys[dd.inverse], c.keys(images))
    assert (dd.inverse[dd.first_row] == np.arange(n_classes)).all()


def test_negatives_are_inequivalent_and_same_composition() -> None:
    c = canon()
    X = np.concatenate([c.sample({"S->V": 2, "Mo->W": 1}, 200, seed=1),
                        c.sample({"S->V": 20, "S->Se": 20, "Mo->V": 5, "Mo->W": 5}, 200, seed=2)])
    neg, kind = astuple(c.negatives(X, seed=3, hard_fraction=0.5))
    assert set(np.unique(kind)) <= {0, 1}
    assert (kind == 1).sum() > 100
    assert not c.equivalent(X, neg).any()
    np.testing.assert_array_equal(composition(X, c.lattice), composition(neg, c.lattice))
    hard = kind == 1
    moved = (X[hard] != neg[hard]).sum(axis=1)
    assert (moved == 2).all()  # one defect moved: two sites changed
    again, kind2 = astuple(Canonicalizer(c.lattice, n_threads=1).negatives(X, seed=3, hard_fraction=0.5))
    np.testing.assert_array_equal(again, neg)
    np.testing.assert_array_equal(kind2, kind)
    # a single defect has one class: no negative exists
    one = c.sample({"S->V": 1}, 3, seed=0)
    assert (c.negatives(one, seed=0).kind == -1).all()


def test_positive_pairs_are_equivalent() -> None:
    c = canon()
    X = c.sample({"S->V": 10, "Mo->W": 3}, 300, seed=4)
    images, ops = astuple(c.random_images(X, seed=9))
    assert c.equivalent(X, images).all()
    np.testing.assert_array_equal(c.apply(X, ops), images)
    assert len(np.unique(ops)) > 100


def test_key_strings_round_trip_and_version() -> None:
    c = canon()
    X = c.sample({"S->V": 3}, 5, seed=0)
    keys = c.keys(X)
    strings = key_to_string(keys)
    assert all(s.startswith(f"ds{KEY_FORMAT_VERSION}:") for s in strings)
    assert len(strings[0]) == len("ds1:") + 2 * 48
    np.testing.assert_array_equal(key_from_string(strings, c.key_bytes), keys)
    with pytest.raises(ValueError, match="format"):
        key_from_string(["ds9:" + "00" * 48], 48)
    with pytest.raises(ValueError, match="bytes"):
        key_from_string(["ds1:00"], 48)


def test_key_layout_is_stable() -> None:
    """Version 1 layout: 2 bits per site, little-endian, per-sublattice codes (frozen)."""
    c = canon()
    x = parse_2dmd(["vac:0:Mo->V;sub:1:S->Se"], c.lattice)
    res = c.canonicalize(x)
    assert res.orbit_size[0] == 384
    key = res.keys[0]
    # the canonical form is the placement itself (anchor Mo->V on site 0, Se on the smallest site)
    np.testing.assert_array_equal(res.canonical[0], x[0])
    assert key[0] == 0b1001  # site 0: code 1 (V); site 1: code 2 (Se)
    assert key[1:].sum() == 0


def test_bad_input_is_refused_with_clear_messages() -> None:
    c = canon()
    x = np.zeros(192, dtype=np.uint8)
    bad = x.copy()
    bad[1] = 1  # Mo->V on an S site
    with pytest.raises(ValueError, match="site 1 cannot hold defect code 1"):
        c.keys(bad)
    too_big = x.copy()
    too_big[5] = 9
    with pytest.raises(PlacementError, match=r"codes are 0\.\.4"):
        c.keys(too_big.astype(np.int64))
    with pytest.raises(ValueError, match=r"codes are 0\.\.4"):
        c._cpp_obj.keys(too_big[None])
    with pytest.raises(PlacementError, match="192 sites"):
        c.keys(np.zeros((2, 10), dtype=np.uint8))
    with pytest.raises(PlacementError, match="integer dtype"):
        c.keys(np.zeros((2, 192)))
    with pytest.raises(ValueError, match="dtype"):
        c._cpp_obj.keys(np.zeros((2, 192), dtype=np.int32))
    with pytest.raises(ValueError, match="shape"):
        c._cpp_obj.keys(np.zeros((2, 3, 192), dtype=np.uint8))
    with pytest.raises(ValueError, match="operation 768"):
        c.apply(x, 768)
    with pytest.raises(ValueError, match="129 defects asked for on the S sites, but the 8x8 supercell "
                                         "has only 128"):
        c.enumerate({"S->V": 129})
    with pytest.raises(ValueError, match="unknown defect kind"):
        c.enumerate({"S->W": 1})
    with pytest.raises(ValueError, match="seed"):
        c.sample({"S->V": 1}, 3, seed=-1)
    many_rows = np.zeros((1000, 192), dtype=np.uint8)
    many_rows[737, 4] = 3
    many_rows[737, 3] = 2  # Mo->W on Mo site 3: fine
    many_rows[737, 7] = 1  # Mo->V on S site 7
    with pytest.raises(ValueError, match="row 737: site 7"):
        c.keys(many_rows)


def test_empty_batch_and_pristine() -> None:
    c = canon()
    empty = np.zeros((0, 192), dtype=np.uint8)
    res = c.canonicalize(empty)
    assert res.keys.shape == (0, 48)
    assert c.dedupe(empty).counts.shape == (0,)
    pristine = c.canonicalize(np.zeros(192, dtype=np.uint8))
    assert pristine.orbit_size[0] == 1
    assert not pristine.keys.any()


def test_2dmd_low_density_placements_are_all_distinct_and_enumerated(data_2dmd) -> None:  # type: ignore[no-untyped-def]
    df = pd.read_csv(data_2dmd / "mos2_8x8.csv")
    c = canon()
    X = parse_2dmd(df["defects"].tolist(), c.lattice)
    low = (df["density"] == "low").to_numpy()
    keys = c.keys(X[low])
    assert len({k.tobytes() for k in keys}) == 5933 == low.sum()
    comp = composition(X[low], c.lattice)[:, 1:]
    expected = {"X2": 19, "S2": 15, "X5": 29, "S3": 743, "S6": 1415}
    low_df = df[low].reset_index(drop=True)
    for desc, rows in low_df.groupby("description"):
        counts = comp[rows.index.to_numpy()[0]]
        e = c.enumerate(list(counts))
        # every 2DMD placement of the type is one of the enumerated classes and vice versa
        assert len(e.orbit_size) == len(rows), desc
        enum_keys = {k.tobytes() for k in c.keys(e.canonical)}
        assert enum_keys == {k.tobytes() for k in keys[rows.index.to_numpy()]}, desc
        if desc in expected:
            assert len(rows) == expected[desc]
    assert len({k.tobytes() for k in c.keys(X)}) == 6433


def test_concurrent_python_threads_agree() -> None:
    from concurrent.futures import ThreadPoolExecutor

    c = canon()
    X = c.sample({"S->V": 10, "Mo->W": 4, "S->Se": 6}, 4000, seed=11)
    expected = Canonicalizer(c.lattice, n_threads=1).keys(X)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda i: c.keys(X), range(16)))
    for r in results:
        np.testing.assert_array_equal(r, expected)


def test_skip_message_without_data(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import helpers

    monkeypatch.setattr(helpers, "DATA_2DMD", tmp_path)
    with pytest.raises(pytest.skip.Exception, match="2DMD data not found"):
        require_2dmd()


def test_sparse_input_matches_dense_and_refuses_bad_rows() -> None:
    c = canon()
    X = np.concatenate([c.sample({"S->V": 2, "Mo->W": 1}, 300, seed=1),
                        c.sample({"S->V": 30, "S->Se": 20, "Mo->V": 5, "Mo->W": 5}, 300, seed=2),
                        np.zeros((2, 192), dtype=np.uint8)])
    r, s = np.nonzero(X)
    offsets = np.concatenate([[0], np.cumsum(np.count_nonzero(X, axis=1))])
    sparse = c.canonicalize_sparse(s, X[r, s], offsets)
    dense = c.canonicalize(X)
    np.testing.assert_array_equal(sparse.keys, dense.keys)
    np.testing.assert_array_equal(sparse.orbit_size, dense.orbit_size)
    np.testing.assert_array_equal(c.apply(X, sparse.operation), dense.canonical)
    with pytest.raises(ValueError, match="row 1: site 5 is listed twice"):
        c.canonicalize_sparse([0, 5, 5], [1, 3, 3], [0, 1, 3])
    with pytest.raises(ValueError, match="row 0: site 400 out of range"):
        c.canonicalize_sparse([400], [1], [0, 1])
    with pytest.raises(ValueError, match="cannot hold defect code 1"):
        c.canonicalize_sparse([1], [1], [0, 1])
    with pytest.raises(ValueError, match="offsets"):
        c.canonicalize_sparse([1], [3], [0, 2])
    empty = c.canonicalize_sparse(np.zeros(0), np.zeros(0), [0])
    assert empty.keys.shape == (0, 48)


def test_results_are_frozen_dataclasses_and_the_cpp_objects_private() -> None:
    c = canon()
    x = c.sample({"S->V": 3, "Mo->W": 1}, 20, seed=2)
    r, s = np.nonzero(x)
    offsets = np.concatenate([[0], np.cumsum(np.count_nonzero(x, axis=1))])
    results = [c.canonicalize(x), c.canonicalize_sparse(s, x[r, s], offsets), c.keys_and_orbits(x),
               c.random_images(x, seed=1), c.negatives(x, seed=1), c.dedupe(x),
               c.enumerate({"S->V": 1})]
    for res in results:
        assert dataclasses.is_dataclass(res) and not isinstance(res, tuple)
        name = dataclasses.fields(res)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(res, name, None)
    ko = c.keys_and_orbits(x)
    np.testing.assert_array_equal(ko.keys, c.keys(x))
    np.testing.assert_array_equal(ko.orbit_size, c.orbit_sizes(x))
    assert not hasattr(c, "core") and not hasattr(c.group, "core")
    assert c.group.compose(5, c.group.inverse(5)) == 0


def test_index_inputs_refuse_non_integers_and_out_of_range_values() -> None:
    """Sites, codes, offsets, keys and operations are never cast silently (17.9 -> 17, 256 -> 0)."""
    c = canon()
    cases = [
        (lambda: c.canonicalize_sparse([17.9], [3], [0, 1]), "sites: 17.9 at index 0 is not an integer"),
        (lambda: c.canonicalize_sparse([17], [3.7], [0, 1]), "codes: 3.7 at index 0 is not an integer"),
        (lambda: c.canonicalize_sparse([17], [256], [0, 1]),
         r"codes: 256 at index 0 is out of range 0\.\.255"),
        (lambda: c.canonicalize_sparse([2**32 + 17], [3], [0, 1]), f"sites: {2**32 + 17} at index 0"),
        (lambda: c.canonicalize_sparse([17], [3], [0, 1.5]), "offsets: 1.5 at index 1 is not an integer"),
        (lambda: c.canonicalize_sparse(["17"], [3], [0, 1]), "sites: expected integers"),
        (lambda: c.apply(np.zeros(192, np.uint8), 1.5), "operations: 1.5 is not an integer"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
    keys = c.keys(c.sample({"S->V": 2}, 2, seed=0)).astype(np.int64)
    keys[1, 3] = 256
    with pytest.raises(ValueError, match=r"keys: 256 at index \(1, 3\) is out of range 0\.\.255"):
        c.from_keys(keys)
    with pytest.raises(ValueError, match=r"keys: \d+\.5 at index \(0, 0\) is not an integer"):
        c.from_keys(keys[:1] + 0.5)
    # whole numbers of any integer or float dtype are fine
    s = c.canonicalize_sparse(np.array([17.0]), np.array([3], dtype=np.int64), [0, 1])
    np.testing.assert_array_equal(s.keys, c.keys(parse_2dmd("vac:17:S->V", c.lattice)))


@pytest.mark.parametrize("n", [12, 16])
def test_large_supercells_use_translation_views_correctly(n: int) -> None:
    """Large groups map sites through point rows plus translations; keys must stay invariant."""
    c = canon((n, n))
    assert c.group.order == 12 * n * n
    X = c.sample({"S->V": 6, "Mo->W": 2, "S->Se": 3}, 200, seed=n)
    assert_invariant(c.keys, X, c, seed=1)
    res = c.canonicalize(X)
    np.testing.assert_array_equal(c.apply(X, res.operation), res.canonical)
    assert (c.group.order % res.orbit_size == 0).all()
