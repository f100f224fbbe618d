from __future__ import annotations

import numpy as np
import pytest
from defectspace import Lattice
from defectspace.lattice import resolve_lattice


def test_mos2_preset_matches_2dmd_numbering() -> None:
    lat = Lattice.preset("MoS2", (8, 8))
    assert lat.n_sites == 192
    frac = lat.fractional_positions
    for i, j in [(0, 0), (3, 5), (7, 7)]:
        k = 3 * (8 * i + j)
        np.testing.assert_allclose(frac[k], [(1 / 3 + i) / 8, (2 / 3 + j) / 8, 0.25], atol=1e-12)
        np.testing.assert_allclose(frac[k + 1], [(2 / 3 + i) / 8, (1 / 3 + j) / 8, 0.144826])
        np.testing.assert_allclose(frac[k + 2], [(2 / 3 + i) / 8, (1 / 3 + j) / 8, 0.355174])
    assert lat.site_species[:3] == ("Mo", "S", "S")
    assert [k.label for k in lat.kinds] == ["Mo->V", "Mo->W", "S->V", "S->Se"]


def test_spglib_finds_layer_group_78_with_12_operations() -> None:
    lat = Lattice.preset("MoS2", (8, 8))
    assert lat.layer_group == 78
    assert len(lat.point_operations) == 12
    assert lat.point_operations[0].is_identity


@pytest.mark.parametrize(("subgroup", "order"), [("full", 768), ("translations", 64),
                                                  ("no_horizontal_mirror", 384)])
def test_group_orders(subgroup: str, order: int) -> None:
    g = Lattice.preset("MoS2", (8, 8)).symmetry(subgroup)
    assert g.order == order
    perms = g.permutations
    assert perms.shape == (order, 192)
    # every element is a bijection preserving the host species
    assert (np.sort(perms, axis=1) == np.arange(192)).all()
    types = Lattice.preset("MoS2", (8, 8)).site_types
    assert (types[perms] == types).all()


def test_group_is_closed_and_has_inverses() -> None:
    g = Lattice.preset("MoS2", (4, 4)).symmetry()
    perms = g.permutations
    rows = {p.tobytes() for p in perms}
    rng = np.random.default_rng(1)
    for a, b in rng.integers(0, g.order, size=(200, 2)):
        assert perms[a][perms[b]].tobytes() in rows
        c = g.compose(int(a), int(b))
        np.testing.assert_array_equal(perms[c], perms[a][perms[b]])
    for e in range(g.order):
        inv = g.inverse(e)
        np.testing.assert_array_equal(perms[e][perms[inv]], np.arange(g.n_sites))


def test_rectangular_supercell_drops_incompatible_rotations() -> None:
    g = Lattice.preset("MoS2", (4, 2)).symmetry()
    # 3-fold rotations do not map a 4x2 supercell onto itself; the rest form a group
    assert g.order < 12 * 8
    assert g.order % 8 == 0
    assert all(op.rotation[0, 1] * 2 % 4 == 0 for op in g.point_operations)


def test_non_group_subset_is_refused() -> None:
    lat = Lattice.preset("MoS2", (4, 4))
    ops = lat.point_operations
    chosen = {id(ops[0]), id(ops[2])}  # identity and a 3-fold rotation without its square
    rot3 = ops[2]
    assert not rot3.is_identity
    with pytest.raises(ValueError, match="group"):
        lat.symmetry(lambda op: id(op) in chosen)


def test_custom_subgroup_translations_and_identity() -> None:
    lat = Lattice.preset("MoS2", (4, 4))
    g = lat.symmetry(lambda op: op.is_identity)
    assert g.order == 16


def test_from_permutations_checks_closure() -> None:
    from defectspace import _core

    types = np.zeros(4, dtype=np.int32)
    ident = np.arange(4, dtype=np.int32)
    swap = np.array([1, 0, 2, 3], dtype=np.int32)
    other = np.array([0, 1, 3, 2], dtype=np.int32)
    g = _core.SymmetryGroup.from_permutations(np.stack([ident, swap]), types)
    assert g.order == 2
    with pytest.raises(ValueError, match="not closed"):
        _core.SymmetryGroup.from_permutations(np.stack([ident, swap, other]), types)
    with pytest.raises(ValueError, match="identity"):
        _core.SymmetryGroup.from_permutations(np.stack([swap]), types)
    with pytest.raises(ValueError, match="maps two sites"):
        _core.SymmetryGroup.from_permutations(np.array([[0, 0, 1, 2]], dtype=np.int32), types)
    with pytest.raises(ValueError, match="dtype"):
        _core.SymmetryGroup.from_permutations(np.stack([ident, swap]).astype(np.int64), types)


@pytest.mark.parametrize("name", ["MoS2", "WSe2", "MoSe2", "WS2"])
def test_presets_have_d3h_symmetry(name: str) -> None:
    lat = Lattice.preset(name, (3, 3))
    assert lat.layer_group == 78
    assert lat.symmetry().order == 12 * 9


def test_bad_lattice_input() -> None:
    with pytest.raises(ValueError, match="unknown lattice preset"):
        Lattice.preset("graphite")
    with pytest.raises(ValueError, match="supercell"):
        Lattice.preset("MoS2", "8by8")
    with pytest.raises(ValueError, match="positive"):
        Lattice.preset("MoS2", (0, 8))
    with pytest.raises(ValueError, match="shape"):
        Lattice(np.eye(2), [[0, 0, 0]], ["C"])
    with pytest.raises(ValueError, match="species"):
        Lattice(np.eye(3), [[0, 0, 0]], ["C", "C"])
    with pytest.raises(ValueError, match="not in the basis"):
        Lattice(np.eye(3), [[0, 0, 0]], ["C"], defects={"N": ["V"]})
    with pytest.raises(ValueError, match="preset"):
        resolve_lattice("nonsense.txt")


def test_description_round_trip_and_cif(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import ase.io

    lat = Lattice.preset("MoS2", (8, 8))
    again = Lattice.from_description(lat.describe())
    assert again.same_as(lat)
    unit = Lattice.preset("MoS2", (1, 1))
    atoms = __import__("ase").Atoms(symbols=list(unit.site_species), positions=unit.positions,
                                    cell=unit.supercell_cell, pbc=(True, True, False))
    path = tmp_path / "mos2.cif"
    ase.io.write(path, atoms, format="cif")
    from_cif = resolve_lattice(path, "8x8")
    assert from_cif.n_sites == 192
    assert from_cif.symmetry().order == 768


def test_neighbors_are_same_sublattice_and_near() -> None:
    lat = Lattice.preset("MoS2", (8, 8))
    nb = lat.neighbors(6)
    assert nb.shape == (192, 6)
    assert (lat.site_types[nb] == lat.site_types[:, None]).all()
    d = lat.minimum_image_distances()
    dist = d[np.arange(192)[:, None], nb]
    # in-plane neighbours at a; for S also the S across the layer (3.13 A)
    assert dist.max() == pytest.approx(3.1903157)
    assert dist.min() == pytest.approx(0.355174 * 14.879004 - 0.144826 * 14.879004)
    assert (np.diff(dist, axis=1) >= -1e-12).all()


def test_minimum_image_distances_against_brute_force_images() -> None:
    lat = Lattice.preset("MoS2", (4, 3))
    d = lat.minimum_image_distances()
    pos = lat.positions
    cell = lat.supercell_cell
    shifts = np.array([[a, b, 0] for a in range(-2, 3) for b in range(-2, 3)], dtype=float) @ cell
    diff = pos[:, None, None, :] - pos[None, :, None, :] - shifts[None, None]
    brute = np.linalg.norm(diff, axis=-1).min(-1)
    np.testing.assert_allclose(d, brute, atol=1e-9)
    np.testing.assert_allclose(d, d.T, atol=1e-9)


_SI_BULK = """data_Si
_cell_length_a 5.431
_cell_length_b 5.431
_cell_length_c 5.431
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'P 1'
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
Si1 Si 0 0 0
Si2 Si 0.5 0.5 0
Si3 Si 0.5 0 0.5
Si4 Si 0 0.5 0.5
Si5 Si 0.25 0.25 0.25
Si6 Si 0.75 0.75 0.25
Si7 Si 0.75 0.25 0.75
Si8 Si 0.25 0.75 0.75
"""

_MIXED = """data_MoWS2
_cell_length_a 3.1903157
_cell_length_b 3.1903157
_cell_length_c 14.879004
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 120
_symmetry_space_group_name_H-M 'P 1'
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
Mo1 Mo 0.333333 0.666667 0.25 0.5
W1 W 0.333333 0.666667 0.25 0.5
S1 S 0.666667 0.333333 0.144826 1.0
S2 S 0.666667 0.333333 0.355174 1.0
"""


def test_bulk_crystal_is_refused_as_a_layer(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """Diamond Si was read as a layer (layer group 18, 5 classes of 'S->V'-like vacancies)."""
    from defectspace.cli import main

    path = tmp_path / "Si_bulk.cif"
    path.write_text(_SI_BULK)
    with pytest.raises(ValueError, match=r"Si_bulk.cif is not a 2D layer: the largest empty gap "
                                         r"along the third cell vector is 1.36 A"):
        resolve_lattice(path, "2x2")
    assert main(["enumerate", "--lattice", str(path), "--supercell", "2x2", "--counts", "Si->V=1",
                 "-o", str(tmp_path / "e.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a 2D layer" in err and "Traceback" not in err
    # layered bulk 2H-MoS2 (two layers, 2.98 A between them) is no single layer either
    slab = (tmp_path / "mos2.cif")
    unit = Lattice.preset("MoS2", (1, 1))
    import ase
    import ase.io

    ase.io.write(slab, ase.Atoms(list(unit.site_species), positions=unit.positions,
                                 cell=unit.supercell_cell, pbc=True), format="cif")
    assert resolve_lattice(slab, "2x2").n_sites == 12
    cell = unit.supercell_cell.copy()
    cell[2] = [0.0, 0.0, 12.3]  # two layers 6.15 A apart: 3.02 A between their S planes
    bulk = ase.Atoms(list(unit.site_species) * 2,
                     positions=np.vstack([unit.positions, unit.positions + np.array([0.0, 0.0, 6.15])]),
                     cell=cell, pbc=True)
    with pytest.raises(ValueError, match="not a 2D layer"):
        Lattice.from_atoms(bulk)


def test_partial_occupancy_is_refused_naming_the_site(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """A Mo 0.5 / W 0.5 site became W, S at 0.9 became S."""
    from defectspace.cli import main

    path = tmp_path / "mixed.cif"
    path.write_text(_MIXED)
    with pytest.raises(ValueError, match=r"partial occupancy 0.5 at atom site Mo1 \(Mo\), 0.5 at atom "
                                         r"site W1 \(W\)"):
        resolve_lattice(path, "2x2")
    path.write_text(_MIXED.replace("Mo1 Mo 0.333333 0.666667 0.25 0.5\nW1 W 0.333333 0.666667 0.25 0.5",
                                   "Mo1 Mo 0.333333 0.666667 0.25 1.0")
                    .replace("0.144826 1.0", "0.144826 0.9"))
    assert main(["enumerate", "--lattice", str(path), "--supercell", "2x2", "--counts", "S->V=1",
                 "-o", str(tmp_path / "e.csv")]) == 2
    err = capsys.readouterr().err
    assert "partial occupancy 0.9 at atom site S1 (S)" in err and err.count("\n") == 1
