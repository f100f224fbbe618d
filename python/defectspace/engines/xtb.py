"""GFN1-xTB gaps (``tblite``; the ``label`` extra), with Debian's OpenBLAS preloaded when present."""

from __future__ import annotations

import ctypes.util
import importlib.metadata
import os
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from defectspace.lattice import Lattice


def find_openblas() -> str | None:
    """Path of an OpenBLAS shared library for ``LD_PRELOAD``, or ``None``.

    ``$DEFECTSPACE_OPENBLAS`` wins (``off``/``0``/empty disables); otherwise Debian's
    ``libopenblas0-serial``/``-pthread`` locations, then ``ctypes.util.find_library``.
    """
    env = os.environ.get("DEFECTSPACE_OPENBLAS")
    if env is not None:
        if env.strip().lower() in ("", "0", "off", "no", "none"):
            return None
        if not Path(env).is_file():
            raise ValueError(f"DEFECTSPACE_OPENBLAS={env!r} is not a file")
        return env
    for cand in (
        "/usr/lib/x86_64-linux-gnu/openblas-serial/libopenblas.so.0",
        "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
        "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
        "/usr/lib64/libopenblas.so.0",
    ):
        if Path(cand).is_file():
            return cand
    found = ctypes.util.find_library("openblas")
    return found


def loaded_blas() -> str:
    """Which BLAS the current process has mapped: the OpenBLAS path, or ``"reference"``."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "unknown"
    for line in maps.splitlines():
        if "libopenblas" in line and "scipy_openblas" not in line:
            return line.split()[-1]
    return "reference"


class XTBEngine:
    """GFN1-xTB (``tblite``) single point, Gamma point, 2D periodic; HOMO-LUMO gap.

    HOMO and LUMO are the orbital energies of index ``ceil(N_el/2) - 1`` and ``ceil(N_el/2)``
    (spin-restricted, aufbau order of the sorted eigenvalues), with ``N_el`` the electron count
    from the orbital occupations. A failed SCF raises (and the row is recorded as failed).
    """

    name = "xtb"
    kind = "gap"
    requires = ("tblite",)
    """Packages the engine imports (checked before any work by the labelling driver)."""

    def __init__(
        self,
        method: str = "GFN1-xTB",
        periodic: tuple[bool, bool, bool] = (True, True, False),
        accuracy: float = 1.0,
        max_iter: int = 250,
        temperature: float = 300.0,
    ) -> None:
        self.method = method
        self.periodic = periodic
        self.accuracy = accuracy
        self.max_iter = max_iter
        self.temperature = temperature

    def setup(self) -> None:
        import tblite.interface  # noqa: F401  (fail early if tblite is missing)

    def version(self) -> str:
        return f"tblite {importlib.metadata.version('tblite')}"

    def settings(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "periodic": list(self.periodic),
            "k_points": "Gamma",
            "accuracy": self.accuracy,
            "max_iter": self.max_iter,
            "electronic_temperature_K": self.temperature,
            "geometry": "unrelaxed",
        }

    def compute(self, atoms: Atoms) -> dict[str, float]:
        from ase.units import Bohr, Hartree
        from tblite.interface import Calculator

        calc = Calculator(
            self.method,
            atoms.numbers,
            atoms.positions / Bohr,
            lattice=np.asarray(atoms.cell) / Bohr,
            periodic=np.array(self.periodic),
        )
        calc.set("verbosity", 0)
        calc.set("accuracy", self.accuracy)
        calc.set("max-iter", self.max_iter)
        calc.set("temperature", self.temperature * 3.166808578545117e-06)  # K -> Hartree
        res = calc.singlepoint()
        eps = np.sort(np.asarray(res.get("orbital-energies")).ravel())
        n_el = round(float(np.sum(res.get("orbital-occupations"))))
        n_occ = (n_el + 1) // 2
        if not 0 < n_occ < len(eps):
            raise ValueError(f"cannot find HOMO/LUMO: {n_el} electrons, {len(eps)} orbitals")
        homo, lumo = float(eps[n_occ - 1]) * Hartree, float(eps[n_occ]) * Hartree
        return {
            "energy": float(res.get("energy")) * Hartree,
            "homo": homo,
            "lumo": lumo,
            "homo_lumo_gap": lumo - homo,
        }

    def references(self, lattice: Lattice | None = None) -> None:
        return None
