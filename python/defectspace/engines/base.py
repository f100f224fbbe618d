"""What the labelling driver needs of an engine (:class:`Engine`), and the shared code of the
engines that are ASE calculators (:class:`CalculatorEngine`: SevenNet-0, CHGNet)."""

from __future__ import annotations

import abc
import warnings
from typing import Any, Protocol

from ase import Atoms

from defectspace.engines.references import References, engine_references
from defectspace.lattice import Lattice


class Engine(Protocol):
    """What :func:`label_structures` needs from an engine.

    ``kind`` is ``"energy"`` (``compute`` returns ``{"energy": eV}``; formation energies are added
    from :meth:`references`) or ``"gap"`` (``compute`` returns ``energy``, ``homo``, ``lumo``,
    ``homo_lumo_gap`` in eV). ``setup`` loads models (called once per worker process, after
    ``torch.set_num_threads(1)``); instances must be picklable before ``setup``. An optional
    ``requires`` tuple names the packages the engine imports: the driver checks them before it
    writes anything or starts a worker. ``references()`` is for 2DMD's MoS2 8x8; a run on another
    lattice calls ``references(lattice=...)`` (E_pristine of that lattice's pristine supercell).
    """

    name: str
    kind: str

    def setup(self) -> None: ...

    def version(self) -> str: ...

    def settings(self) -> dict[str, Any]: ...

    def compute(self, atoms: Atoms) -> dict[str, float]: ...

    def references(self, lattice: Lattice | None = None) -> References | None: ...


class CalculatorEngine(abc.ABC):
    """Shared code of the ASE-calculator energy engines (model loaded lazily by ``setup``)."""

    name = "?"
    kind = "energy"
    requires: tuple[str, ...] = ()
    """Packages the engine imports (checked before any work by the labelling driver)."""

    def __init__(self) -> None:
        self._calc: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_calc"] = None  # never pickle a loaded model
        return state

    @abc.abstractmethod
    def _make_calculator(self) -> Any:
        """Load the model and return an ASE calculator."""

    def setup(self) -> None:
        if self._calc is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._calc = self._make_calculator()

    def energy(self, atoms: Atoms) -> float:
        """Single-point potential energy (eV) of ``atoms``."""
        self.setup()
        original: Any = atoms  # ASE's Atoms methods are untyped
        work: Any = original.copy()
        work.calc = self._calc
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(work.get_potential_energy())

    def compute(self, atoms: Atoms) -> dict[str, float]:
        return {"energy": self.energy(atoms)}

    def references(self, lattice: Lattice | None = None) -> References:
        return engine_references(self.energy, lattice)
