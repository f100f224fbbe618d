"""Reference energies for 2DMD's formation-energy formula: 2DMD's own VASP values, and the
chemical potentials and pristine energy an engine computes for itself."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from ase import Atoms

from defectspace.lattice import VACANCY, Lattice
from defectspace.placement import Defect
from defectspace.structure import placement_to_atoms

#: VASP chemical potentials used by 2DMD (eV per atom).
DMD_CHEMICAL_POTENTIALS: dict[str, float] = {
    "Mo": -10.9332,
    "S": -4.127,
    "W": -13.0106,
    "Se": -3.489,
}
#: VASP energy of the pristine 8x8 MoS2 supercell used by 2DMD (eV).
DMD_E_PRISTINE: float = -1398.1131


@functools.cache
def mos2_2dmd() -> Lattice:
    """2DMD's lattice: 8x8 MoS2 in its site order (the labels' and references' geometry)."""
    return Lattice.preset("MoS2", (8, 8))


@dataclasses.dataclass(frozen=True)
class References:
    """Reference energies of one engine for 2DMD's formation-energy formula.

    ``mu`` maps element -> chemical potential (eV/atom); ``e_pristine`` is the energy (eV) of the
    pristine 8x8 MoS2 in 2DMD's unrelaxed geometry; ``details`` records how they were obtained
    (lattice constants in Angstrom, per-formula-unit energies in eV).
    """

    mu: dict[str, float]
    e_pristine: float
    details: dict[str, Any]


def formation_energy(
    e_defective: float,
    e_pristine: float,
    defects: Sequence[Defect],
    mu: Mapping[str, float],
) -> float:
    """Total formation energy with 2DMD's formula (eV).

    ``E_f = E_defective - E_pristine + sum_removed mu(host) - sum_added mu(dopant)``: a vacancy
    removes its host atom, a substitution removes the host and adds the dopant. 2DMD's
    ``formation_energy_per_site`` is this value divided by ``len(defects)``. ``defects`` are the
    placement's (:func:`defectspace.placement.to_defects`).

    Raises:
        ValueError: a chemical potential is missing.
    """
    total = e_defective - e_pristine
    for d in defects:
        for element, sign in ((d.host, 1.0), (d.species, -1.0)):
            if element == VACANCY:
                continue
            if element not in mu:
                raise ValueError(f"no chemical potential for {element!r} (have {sorted(mu)})")
            total += sign * mu[element]
    return total


def _bcc(symbol: str, a: float) -> Atoms:
    return Atoms(symbol * 2, scaled_positions=[(0, 0, 0), (0.5, 0.5, 0.5)], cell=[a, a, a], pbc=True)


def _mx2(metal: str, chalcogen: str, a: float, h: float) -> Atoms:
    """Monolayer 2H-MX2 unit cell with in-plane constant ``a`` and chalcogen height ``h``, in
    2DMD's cell height (vacuum)."""
    c = float(mos2_2dmd().cell[2, 2])
    cell = [[a, 0.0, 0.0], [-a / 2, a * math.sqrt(3) / 2, 0.0], [0.0, 0.0, c]]
    zc = 0.25 * c
    frac = [(1 / 3, 2 / 3, zc / c), (2 / 3, 1 / 3, (zc - h) / c), (2 / 3, 1 / 3, (zc + h) / c)]
    return Atoms([metal, chalcogen, chalcogen], scaled_positions=frac, cell=cell, pbc=(True, True, False))


#: Experimental starting points: bcc lattice constants and MX2 (a, chalcogen height), Angstrom.
_EXP_BCC = {"Mo": 3.147, "W": 3.165}
_EXP_MX2 = {"S": (3.160, 1.586), "Se": (3.288, 1.669)}


def engine_references(energy: Callable[[Atoms], float], lattice: Lattice | None = None) -> References:
    """Chemical potentials and pristine energy with one engine's ``energy(atoms)`` (eV).

    * mu(Mo), mu(W): energy per atom of bcc metal, lattice constant relaxed with the engine
      (bounded 1D minimisation within +-8 % of experiment).
    * mu(S) = (E(MoS2 per f.u.) - mu(Mo)) / 2 and mu(Se) = (E(MoSe2 per f.u.) - mu(Mo)) / 2, with
      the monolayer 2H unit cells relaxed with the engine in ``a`` and the chalcogen height
      (Nelder-Mead from the experimental values).
    * E_pristine: the pristine 8x8 MoS2 in 2DMD's unrelaxed geometry (:func:`mos2_2dmd`), or the
      pristine supercell of ``lattice`` (e.g. WSe2 8x8) in its preset geometry when one is given.

    The chemical potentials do not depend on ``lattice``: every host shares one set (as 2DMD's
    VASP values do).
    """
    from scipy.optimize import minimize, minimize_scalar

    mu: dict[str, float] = {}
    details: dict[str, Any] = {}
    for metal, a0 in _EXP_BCC.items():
        res = minimize_scalar(
            lambda a, m=metal: energy(_bcc(m, float(a))) / 2,
            bounds=(0.92 * a0, 1.08 * a0),
            method="bounded",
            options={"xatol": 1e-4},
        )
        mu[metal] = float(res.fun)
        details[f"a_bcc_{metal}"] = float(res.x)
    for chalcogen, (a0, h0) in _EXP_MX2.items():
        res = minimize(
            lambda p, x=chalcogen: energy(_mx2("Mo", x, float(p[0]), float(p[1]))),
            x0=np.array([a0, h0]),
            method="Nelder-Mead",
            options={"xatol": 1e-4, "fatol": 1e-6, "maxiter": 400},
        )
        e_fu = float(res.fun)
        mu[chalcogen] = (e_fu - mu["Mo"]) / 2
        details[f"a_Mo{chalcogen}2"] = float(res.x[0])
        details[f"h_{chalcogen}"] = float(res.x[1])
        details[f"E_Mo{chalcogen}2_per_fu"] = e_fu
    own = lattice is None
    lattice = mos2_2dmd() if lattice is None else lattice
    e_pristine = float(energy(placement_to_atoms(np.zeros(lattice.n_sites, dtype=np.uint8), lattice)))
    details["E_pristine_per_fu"] = e_pristine / lattice.n_cells
    details["method"] = (
        "bcc metals and monolayer MoX2 relaxed with the engine; mu_X = (E(MoX2)/f.u. - mu_Mo)/2; "
        + ("E_pristine from 2DMD's unrelaxed 8x8 geometry" if own else
           f"E_pristine from the pristine {lattice.name} {lattice.supercell[0]}x{lattice.supercell[1]} "
           "supercell in the preset's geometry (defectspace.structure.placement_to_atoms)")
    )
    if not own:
        details["E_pristine_lattice"] = lattice.describe()
    return References(mu=mu, e_pristine=e_pristine, details=details)
