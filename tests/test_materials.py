"""Any 2D material, end to end: presets and their symmetry, ``--defects`` on the command line
(given, inferred from structures, refused when wrong), and the canonical keys of hBN and 1T-TiS2
defect structures read from shuffled CIFs against a brute force over spglib's group."""

from __future__ import annotations

from pathlib import Path

import ase
import ase.io
import numpy as np
import pandas as pd
import pytest
from defectspace import Canonicalizer, Lattice
from defectspace.cli import main
from defectspace.lattice import PRESETS, parse_defects, preset_site_order, resolve_lattice
from defectspace.structure import defects_found, map_structure, placement_to_atoms

# (preset, spglib layer group, point operations spglib finds, distinct site actions on a 3x3)
SYMMETRY = [
    ("MoS2", 78, 12, 12), ("WSe2", 78, 12, 12), ("MoSe2", 78, 12, 12), ("WS2", 78, 12, 12),
    ("1T-TiS2", 72, 12, 12), ("1T-TiSe2", 72, 12, 12), ("1T-ZrS2", 72, 12, 12),
    ("1T-HfS2", 72, 12, 12), ("1T-SnS2", 72, 12, 12), ("1T-PtSe2", 72, 12, 12),
    ("1T-MoS2", 72, 12, 12),
    # a flat layer: the horizontal mirror moves no site, so half the operations act alike
    ("hBN", 78, 12, 6), ("graphene", 80, 24, 12),
    ("GaSe", 78, 12, 12), ("InSe", 78, 12, 12),
    ("black-phosphorus", 42, 8, 8),
]


@pytest.mark.parametrize(("name", "group", "n_ops", "n_actions"), SYMMETRY)
def test_preset_symmetry_from_spglib(name: str, group: int, n_ops: int, n_actions: int) -> None:
    lat = Lattice.preset(name, (3, 3))
    assert lat.layer_group == group
    assert len(lat.point_operations) == n_ops
    assert lat.symmetry().order == n_actions * 9
    assert preset_site_order(name).startswith("L=0")
    assert lat.n_basis == preset_site_order(name).count("L=")


def test_every_preset_is_tested_and_aliases_resolve() -> None:
    assert {s[0] for s in SYMMETRY} == set(PRESETS)
    assert Lattice.preset("2H-MoS2", (8, 8)).same_as(Lattice.preset("MoS2", (8, 8)))
    assert Lattice.preset("phosphorene", (2, 2)).name == "black-phosphorus"
    assert Lattice.preset("2h-wse2", (2, 2)).name == "WSe2"


def test_parse_defects_and_presets_with_defects() -> None:
    assert parse_defects("B->V, B->C,N->V,N->C") == {"B": ("V", "C"), "N": ("V", "C")}
    lat = resolve_lattice("hBN", "4x4", "B->C,N->V")
    assert [k.label for k in lat.kinds] == ["B->C", "N->V"]
    for bad, match in [("B->", "look like"), ("B-C", "look like"), ("B->Xx", "no element"),
                       ("B->B", "cannot be substituted"), ("B->C,B->C", "twice"), ("", "listed like")]:
        with pytest.raises(ValueError, match=match):
            parse_defects(bad)
    with pytest.raises(ValueError, match="host absent from the cell"):
        resolve_lattice("hBN", "4x4", "Mo->W")


def _unit_cif(tmp_path: Path, name: str) -> Path:
    """The preset's unit cell as a CIF, atoms in reverse order (the lattice is the file alone)."""
    unit = Lattice.preset(name, (1, 1))
    atoms = ase.Atoms(list(unit.basis_species)[::-1], scaled_positions=unit.basis[::-1],
                      cell=unit.cell, pbc=True)
    path = tmp_path / f"{name}.cif"
    ase.io.write(path, atoms)
    return path


def _brute_force_class(atoms: ase.Atoms, unit: Lattice, n: tuple[int, int]) -> tuple[bytes, int]:
    """The smallest image of a structure over spglib's group, computed on the atoms themselves:
    every point operation of the unit cell (from spglib directly) and every supercell
    translation applied to the atoms' fractional coordinates; the image is the sorted list of
    (element, rounded position). Returns the smallest image and the number of distinct images
    (the orbit size). Knows nothing of sites, keys or the C++ core."""
    import spglib

    numbers = [unit.host_types.index(s) + 1 for s in unit.basis_species]
    ds = spglib.get_symmetry_layerdataset((unit.cell, unit.basis, numbers), aperiodic_dir=2,
                                          symprec=1e-3)
    n1, n2 = n
    frac = atoms.cell.scaled_positions(atoms.positions)
    u = frac * np.array([n1, n2, 1.0])  # unit-cell fractions
    symbols = np.array(atoms.get_chemical_symbols())
    seen: set[bytes] = set()
    for r, t in zip(ds.rotations, ds.translations, strict=True):
        img = u @ np.asarray(r, dtype=float).T + t
        for a in range(n1):
            for b in range(n2):
                f = (img + np.array([a, b, 0.0])) / np.array([n1, n2, 1.0])
                grid = np.round(np.mod(f, 1.0) * 3600).astype(np.int64) % 3600
                order = np.lexsort((grid[:, 2], grid[:, 1], grid[:, 0], symbols))
                seen.add(symbols[order].tobytes() + grid[order].tobytes())
    return min(seen), len(seen)


@pytest.mark.parametrize(("name", "defects", "n"), [("hBN", {"B->C": 1, "N->C": 2}, 2),
                                                    ("1T-TiS2", {"S->Se": 3}, 3)])
def test_keys_of_shuffled_structures_match_brute_force(tmp_path: Path, name: str,
                                                       defects: dict[str, int], n: int) -> None:
    """The must-show test of issue 14: defect structures of hBN 6x6 with C substitutions and of
    1T-TiS2 6x6 with Se substitutions, atoms shuffled, the lattice given only as a unit-cell CIF:
    the keys of ``canonicalize`` partition them exactly as the brute force does."""
    preset = Lattice.preset(name, (6, 6))
    c = Canonicalizer(preset)
    rng = np.random.default_rng(14)
    base = np.concatenate([c.sample({k: v}, 6, seed=1) for k, v in defects.items()]
                          + [c.sample(defects, 12, seed=2)])
    images = c.random_images(np.repeat(base, 2, axis=0), seed=3).images  # classes seen twice
    rows = np.concatenate([base, images])
    folder = tmp_path / "structures"
    folder.mkdir()
    unit = Lattice.preset(name, (1, 1))
    brute = []
    for i, row in enumerate(rows):
        atoms = placement_to_atoms(row, preset)
        atoms = atoms[rng.permutation(len(atoms))]
        atoms.positions += rng.normal(0, 1e-5, atoms.positions.shape)  # float noise of a CIF
        ase.io.write(folder / f"s{i:03d}.cif", atoms)
        brute.append(_brute_force_class(atoms, unit, (6, 6)))
    out = tmp_path / "keys.csv"
    assert main(["canonicalize", str(folder), "--lattice", str(_unit_cif(tmp_path, name)),
                 "--supercell", "6x6", "-o", str(out)]) == 0
    df = pd.read_csv(out)
    assert list(df["id"]) == [f"s{i:03d}" for i in range(len(rows))]
    keys = df["canonical_key"].tolist()
    classes = [b[0] for b in brute]
    pairs = set(zip(keys, classes, strict=True))
    assert len(pairs) == len(set(keys)) == len(set(classes))  # the same partition
    assert 1 < len(set(keys)) < len(rows)
    # and the orbit sizes are the brute force's numbers of distinct images
    assert df["orbit_size"].tolist() == [b[1] for b in brute]


def _structures(tmp_path: Path, name: str, kinds: list[tuple[int, str]]) -> tuple[Path, Path]:
    """A folder with one structure of ``preset`` 4x4 with the given (site, species) defects,
    and the preset's unit-cell CIF."""
    lat = Lattice.preset(name, (4, 4))
    atoms = placement_to_atoms(np.zeros(lat.n_sites, np.uint8), lat)
    drop = []
    for site, species in kinds:
        if species == "V":
            drop.append(site)
        else:
            atoms[site].symbol = species
    del atoms[drop]
    folder = tmp_path / f"{name}_structures"
    folder.mkdir()
    ase.io.write(folder / "x.cif", atoms[::-1])
    return folder, _unit_cif(tmp_path, name)


def test_defects_inferred_from_structures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder, cif = _structures(tmp_path, "hBN", [(0, "C"), (3, "C"), (5, "V")])
    out = tmp_path / "k.csv"
    assert main(["canonicalize", str(folder), "--lattice", str(cif), "--supercell", "4x4",
                 "-o", str(out)]) == 0
    err = capsys.readouterr().err
    # the CIF lists N first: its sites (and the inferred kinds) come in that order
    assert "--defects inferred" in err and "N->V,N->C,B->V,B->C" in err
    df = pd.read_csv(out)
    assert sorted(d.split(":")[2] for d in df["defects"][0].split(";")) == ["B->C", "N->C", "N->V"]
    lat = resolve_lattice(cif, "4x4", "B->V,B->C,N->V,N->C")
    atoms = ase.io.read(folder / "x.cif")
    assert defects_found(atoms, lat) == {"B": {"C"}, "N": {"C", "V"}}
    assert map_structure(atoms, lat).states.sum() > 0


@pytest.mark.parametrize(("args", "message"), [
    (["--defects", "B->V,B->C"], "contradicts the structures: x has C on a N site (N->C)"),
    (["--defects", "B->C,N->C"], "contradicts the structures: x has a vacancy (N->V)"),
    (["--defects", "B->V,Mo->W"], "host absent from the cell"),
    (["--defects", "B->Q"], "no element symbol"),
])
def test_bad_defects_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     args: list[str], message: str) -> None:
    folder, cif = _structures(tmp_path, "hBN", [(0, "C"), (3, "C"), (5, "V")])
    out = tmp_path / "k.csv"
    assert main(["canonicalize", str(folder), "--lattice", str(cif), "--supercell", "4x4",
                 "-o", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_element_without_site_one_line_exit_2(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    folder, _ = _structures(tmp_path, "hBN", [(0, "O")])
    out = tmp_path / "k.csv"
    assert main(["canonicalize", str(folder), "--lattice", "hBN", "--supercell", "4x4",
                 "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "an element no site of hBN can hold" in err and len(err.splitlines()) == 1


def test_bulk_cif_refused_as_layer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bulk = ase.Atoms("BN", scaled_positions=[[1 / 3, 2 / 3, 0.0], [2 / 3, 1 / 3, 0.0]],
                     cell=[[2.5, 0, 0], [-1.25, 2.165, 0], [0, 0, 3.3]], pbc=True)
    cif = tmp_path / "bulk.cif"
    ase.io.write(cif, bulk)
    assert main(["enumerate", "--counts", "B->C=1", "--lattice", str(cif), "--defects", "B->C",
                 "--supercell", "2x2", "-o", str(tmp_path / "e.csv")]) == 2
    assert "not a 2D layer" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["graphene", "black-phosphorus", "1T-TiS2", "GaSe"])
def test_enumerate_on_new_presets_matches_burnside(tmp_path: Path, name: str) -> None:
    """Distinct placements of 2 vacancies: the core's enumeration against Burnside's count
    over the group's permutations."""
    lat = Lattice.preset(name, (3, 3))
    host = lat.host_types[0]
    out = tmp_path / "e.csv"
    assert main(["enumerate", "--counts", f"{host}->V=2", "--lattice", name, "--supercell", "3x3",
                 "--defects", f"{host}->V", "-o", str(out)]) == 0
    df = pd.read_csv(out)
    perms = lat.symmetry().permutations
    sites = np.flatnonzero(lat.site_types == 0)
    fixed = 0
    for p in perms:
        # pairs {a, b} of host sites fixed by p: p(a) = a and p(b) = b, or p swaps them
        fix = int((p[sites] == sites).sum())
        swaps = int(((p[p[sites]] == sites) & (p[sites] != sites)).sum()) // 2
        fixed += fix * (fix - 1) // 2 + swaps
    assert len(df) == fixed // len(perms)
    n = len(sites)
    assert int(df["orbit_size"].sum()) == n * (n - 1) // 2


def _labelled(tmp_path: Path, n: int = 40) -> tuple[Path, np.ndarray, Lattice]:
    """A CSV of hBN 4x4 placements labelled by a pair model (exactly learnable by ridge)."""
    from defectspace import format_2dmd
    from defectspace.descriptors import defect_histogram

    lat = Lattice.preset("hBN", (4, 4))
    c = Canonicalizer(lat)
    x = np.concatenate([c.sample({"B->C": 1, "N->C": 1}, n // 2, seed=1),
                        c.sample({"N->V": 2, "B->C": 1}, n - n // 2, seed=2)])
    h = defect_histogram(x, lat)
    y = h @ np.random.default_rng(0).normal(0, 0.1, h.shape[1]) + 0.5
    path = tmp_path / "labels.csv"
    pd.DataFrame({"id": [f"r{i}" for i in range(n)], "defects": format_2dmd(x, lat),
                  "gap": y}).to_csv(path, index=False)
    return path, y, lat


def test_fit_then_predict_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from defectspace.predict import PropertyPredictor

    labels, y, lat = _labelled(tmp_path)
    model = tmp_path / "model"
    assert main(["fit", str(labels), "-o", str(model), "--target", "gap", "--lattice", "hBN",
                 "--supercell", "4x4", "--regressor", "ridge", "--folds", "3"]) == 0
    assert "ridge chosen by 3-fold" in capsys.readouterr().err
    out = tmp_path / "pred.csv"
    assert main(["predict", str(labels), "--model", str(model), "-o", str(out)]) == 0
    pred = pd.read_csv(out)
    assert list(pred.columns) == ["id", "gap", "gap_std", "gap_out_of_domain"]
    loaded = PropertyPredictor.load(model)
    assert loaded.lattice is not None and loaded.lattice.same_as(lat)
    from defectspace import parse_2dmd

    states = parse_2dmd(pd.read_csv(labels)["defects"].tolist(), lat)
    np.testing.assert_array_equal(pred["gap"].to_numpy(), loaded.predict(states))
    assert np.mean(np.abs(pred["gap"] - y)) < 0.01  # learns the labels (std 0.04 eV)
    assert np.std(y) > 0.02
    assert loaded.calibration is not None  # uncertainty calibrated on out-of-fold residuals
    mean, std = loaded.predict_with_std(states)
    np.testing.assert_array_equal(mean, loaded.predict(states))
    assert np.all(std > 0)


def test_fit_from_structures_with_a_label_column(tmp_path: Path) -> None:
    from defectspace import parse_2dmd

    labels, _, lat = _labelled(tmp_path, 20)
    df = pd.read_csv(labels)
    folder = tmp_path / "cifs"
    folder.mkdir()
    for ident, text in zip(df["id"], df["defects"], strict=True):
        ase.io.write(folder / f"{ident}.cif", placement_to_atoms(parse_2dmd([text], lat)[0], lat))
    df[["id", "gap"]].to_csv(tmp_path / "gaps.csv", index=False)
    model = tmp_path / "model"
    assert main(["fit", str(tmp_path / "gaps.csv"), "--structures", str(folder), "-o", str(model),
                 "--target", "gap", "--lattice", str(_unit_cif(tmp_path, "hBN")), "--supercell",
                 "4x4", "--regressor", "ridge", "--folds", "3"]) == 0
    assert (model / "metadata.json").exists()


@pytest.mark.parametrize(("edit", "message"), [
    (lambda df: df.assign(gap=df["gap"].astype(object).where(df.index != 3, "n/a")),
     "line 5 (id r3): label gap is 'n/a', not a finite number"),
    (lambda df: df.assign(gap=df["gap"].where(df.index != 2, np.nan)),
     "line 4 (id r2): label gap is missing (1 rows lack it)"),
    (lambda df: df.drop(columns=["gap"]), "no label column 'gap'"),
])
def test_fit_bad_label_column_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               edit: object, message: str) -> None:
    labels, _, _ = _labelled(tmp_path, 10)
    df = edit(pd.read_csv(labels))  # type: ignore[operator]
    df.to_csv(labels, index=False)
    model = tmp_path / "model"
    assert main(["fit", str(labels), "-o", str(model), "--target", "gap", "--lattice", "hBN",
                 "--supercell", "4x4"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not model.exists()


ANY_LATTICE = ["graphene", "black-phosphorus", "GaSe", "hBN", "1T-TiS2", "MoS2"]


@pytest.mark.parametrize("name", ANY_LATTICE)
def test_equivariant_encoder_invariant_on_any_lattice(name: str) -> None:
    """Untrained, so the invariance is the architecture's: graphene's and black phosphorus's
    operations move basis site 0 (black phosphorus's group has no point of full symmetry at
    all); the features are indexed by space-group elements and need none."""
    torch = pytest.importorskip("torch")
    from defectspace.ml.config import channel_table, n_channels
    from defectspace.ml.embedder import Embedder
    from defectspace.ml.encoder import AnchorPointGroup, Encoder, EncoderConfig, states_to_grid
    from defectspace.placement import random_placements

    lat = Lattice.preset(name, (6, 6))
    group = AnchorPointGroup.of(lat)
    assert group.fixes_site_0 == (name not in ("graphene", "black-phosphorus", "GaSe"))
    n = group.order
    for a in range(n):  # the representatives multiply as the group, up to lattice translations
        for b in range(n):
            for site in [(0, 0, 0), (1, -1, lat.n_basis - 1)]:
                ci, cj, cb = group.image(a, group.image(b, site))
                di, dj, db = group.image(int(group.mul[a, b]), site)
                assert (ci - di, cj - dj, cb) == (*group.mul_shift[a, b], db)
    enc = Encoder(EncoderConfig(in_channels=n_channels(lat), architecture="equivariant",
                                channels=24, layers=3, hidden=16), lat)
    emb = Embedder(enc, lat)
    x = random_placements(lat, 60, (1, 8), np.random.default_rng(1))
    images = Canonicalizer(lat).random_images(x, seed=3).images
    a, b = emb.embed(x), emb.embed(images)
    assert np.abs(a - b).max() < 2e-6  # float rounding
    assert np.median(np.linalg.norm(a[:30] - a[30:], axis=1)) > 1e-4  # and not constant
    with torch.no_grad():  # the folded inference path and the plain one agree
        table = torch.from_numpy(channel_table(lat).astype(np.int64))
        plain = enc(states_to_grid(torch.from_numpy(x), table, lat.supercell)).numpy()
    np.testing.assert_allclose(plain, a, atol=2e-6)


@pytest.mark.slow
def test_train_embedder_on_hbn_from_the_cores_pairs(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    import json

    out = tmp_path / "emb"
    assert main(["train-embedder", "--lattice", "hBN", "--supercell", "6x6", "--defects",
                 "B->V,B->C,N->V,N->C", "--steps", "100", "--threads", "1", "--eval-pairs", "400",
                 "--no-progress", "--out", str(out)]) == 0
    assert "pairs from the core alone" in capsys.readouterr().err
    metrics = json.loads((out / "embedder.json").read_text())["metrics"]
    assert metrics["low"]["accuracy"] == 1.0 and metrics["high"]["accuracy"] == 1.0
    assert metrics["low"]["max_pos"] < 1e-4  # equivalent placements: float rounding apart


def test_pymatgen_lattice_placements_and_mapping() -> None:
    pytest.importorskip("pymatgen.io.ase")
    from defectspace.structure import placement_to_structure

    unit = Lattice.preset("hBN", (1, 1))
    pristine = placement_to_structure(np.zeros(unit.n_sites, np.uint8), unit)
    lat = Lattice.from_pymatgen(pristine, "4x4", {"B": ["V", "C"], "N": ["V", "C"]})
    assert lat.layer_group == 78 and lat.same_as(Lattice.preset("hBN", (4, 4)))
    x = Canonicalizer(lat).sample({"B->C": 1, "N->V": 2}, 5, seed=0)
    for row in x:
        structure = placement_to_structure(row, lat)
        assert type(structure).__name__ == "Structure" and len(structure) == lat.n_sites - 2
        shuffled = structure.copy()
        shuffled.sites = [structure.sites[i] for i in np.random.default_rng(0).permutation(len(structure))]
        np.testing.assert_array_equal(map_structure(shuffled, lat).states, row)
    assert Lattice.from_pymatgen(pristine).kinds[0].label == "B->V"  # vacancies by default


def test_pymatgen_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from defectspace.structure import placement_to_structure

    monkeypatch.setitem(sys.modules, "pymatgen.io.ase", None)
    lat = Lattice.preset("hBN", (2, 2))
    with pytest.raises(ImportError, match=r"pip install 'defectspace\[pymatgen\]'"):
        placement_to_structure(np.zeros(lat.n_sites, np.uint8), lat)


def test_fit_needs_labels_and_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", "-o", str(tmp_path / "m")]) == 2
    assert "fit needs LABELS and --target" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_predict_checks_lattice_with_its_defects(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    labels, _, _ = _labelled(tmp_path, 20)
    model = tmp_path / "model"
    assert main(["fit", str(labels), "-o", str(model), "--target", "gap", "--lattice", "hBN",
                 "--supercell", "4x4", "--regressor", "ridge", "--folds", "2"]) == 0
    out = tmp_path / "p.csv"
    base = ["predict", str(labels), "--model", str(model), "-o", str(out), "--lattice", "hBN",
            "--supercell", "4x4"]
    assert main([*base, "--defects", "B->V,B->C,N->V,N->C"]) == 0
    capsys.readouterr()
    assert main([*base, "--defects", "B->C"]) == 2
    assert "cannot predict for" in capsys.readouterr().err
