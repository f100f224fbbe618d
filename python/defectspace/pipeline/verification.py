"""Engine labels of designed classes, kept in a resumable label file keyed by canonical key."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from defectspace.lattice import Lattice
from defectspace.placement import format_2dmd

ENGINE_PROPERTY = {
    "xtb": "homo_lumo_gap",
    "sevenn": "formation_energy_per_site",
    "chgnet": "formation_energy_per_site",
}
"""The property each verification engine measures."""


class ModelScale:
    """Maps an engine's values onto the scale a predictor was trained on, with the engine
    correction the predictor records (``info["engine_correction"]``, fitted on rows that have
    both: the shipped gap model's GFN1-xTB gaps are DFT ~ 0.065 + 1.047 xTB). Without one for this
    engine, values pass unchanged."""

    def __init__(self, predictor: Any, engine: str, lattice: Lattice) -> None:
        self.engine = engine
        self.lattice = lattice
        d = getattr(predictor, "info", {}).get("engine_correction")
        self.correction: Any = None
        if isinstance(d, Mapping) and d.get("engine") == engine:
            from defectspace.predict.recipes import EngineCorrection

            self.correction = EngineCorrection.from_dict(d)

    def __call__(self, values: NDArray[np.float64], states: NDArray[np.uint8]) -> NDArray[np.float64]:
        if self.correction is None:
            return np.asarray(values, dtype=np.float64)
        counts = np.stack([(np.asarray(states) == k.code).sum(axis=1) for k in self.lattice.kinds], axis=1)
        out: NDArray[np.float64] = self.correction.apply(values, counts if self.correction.per_kind else None)
        return out

    def describe(self) -> str:
        c = self.correction
        if c is None:
            return f"{self.engine} values as measured (the model records no correction for {self.engine})"
        form = (f"{c.intercept:+.3f} + {c.slope:.3f} x" if not c.per_kind
                else f"{c.slope:.3f} x + per-kind references")
        return (f"{self.engine} values on the model's scale: {form} (fitted on {c.n_rows} rows, "
                f"RMS {c.residual_rms * 1000:.0f} meV)")


class EngineLabels:
    """Labels one engine computed for classes of one lattice, in ``work_dir``.

    ``{engine}_candidates.csv`` lists every class sent to the engine (id = canonical key, defects in
    2DMD form); ``{engine}_labels.csv`` is the engine driver's resumable output. A class already
    labelled (or failed) is never computed again, also after a kill and restart.
    """

    def __init__(self, work_dir: str | Path, engine: str, lattice: Lattice, workers: int = 1) -> None:
        if engine not in ENGINE_PROPERTY:
            raise ValueError(f"unknown engine {engine!r}; known: {', '.join(ENGINE_PROPERTY)}")
        self.work_dir = Path(work_dir)
        self.engine = engine
        self.property = ENGINE_PROPERTY[engine]
        self.lattice = lattice
        self.workers = int(workers)
        self.candidates = self.work_dir / f"{engine}_candidates.csv"
        self.output = self.work_dir / f"{engine}_labels.csv"
        self._asked: set[str] = set()

    @property
    def n_used(self) -> int:
        """Distinct classes this object asked the engine for (computed now or found done)."""
        return len(self._asked)

    def done(self) -> dict[str, float]:
        """Canonical key -> the engine's value (NaN for a failed calculation), as on disk."""
        import pandas as pd

        if not self.output.exists() or self.output.stat().st_size == 0:
            return {}
        df = pd.read_csv(self.output, dtype={"id": str})
        values = pd.to_numeric(df.get(self.property), errors="coerce")
        ok = df["status"] == "ok"
        return {
            str(i): (float(v) if good else float("nan"))
            for i, v, good in zip(df["id"], values, ok, strict=True)
        }

    def labelled(self) -> tuple[NDArray[np.uint8], list[str], NDArray[np.float64]]:
        """Every class labelled in ``work_dir`` so far (an earlier, perhaps killed, run's too):
        placements, keys and the engine's values (NaN for a failed calculation)."""
        import pandas as pd

        from defectspace.placement import parse_2dmd

        done = self.done()
        if not done or not self.candidates.exists():
            return np.zeros((0, self.lattice.n_sites), np.uint8), [], np.zeros(0)
        cand = pd.read_csv(self.candidates, dtype=str, keep_default_na=False)
        cand = cand[cand["id"].isin(list(done))]
        keys = [str(k) for k in cand["id"]]
        states = parse_2dmd(cand["defects"].tolist(), self.lattice)
        return states, keys, np.asarray([done[k] for k in keys], dtype=np.float64)

    def reuse(self, key: str) -> None:
        """Counts a class labelled earlier (see :meth:`labelled`) as used by this run."""
        self._asked.add(key)

    def measure(self, states: NDArray[np.uint8], keys: Sequence[str]) -> NDArray[np.float64]:
        """The engine's value for each class (computing only those not labelled yet)."""
        import pandas as pd

        from defectspace.io import write_csv_atomic

        self.work_dir.mkdir(parents=True, exist_ok=True)
        keys = list(keys)
        by_key = dict(zip(keys, np.asarray(states, dtype=np.uint8), strict=True))
        old = (
            pd.read_csv(self.candidates, dtype=str, keep_default_na=False)
            if self.candidates.exists()
            else pd.DataFrame({"id": [], "defects": []})
        )
        new = [k for k in keys if k not in set(old["id"])]
        if new:
            rows = pd.DataFrame(
                {"id": new, "defects": format_2dmd(np.stack([by_key[k] for k in new]), self.lattice)}
            )
            write_csv_atomic(pd.concat([old, rows], ignore_index=True), self.candidates)
        known = pd.read_csv(self.candidates, dtype=str, keep_default_na=False)
        defects_of = dict(zip(known["id"], known["defects"], strict=True))
        todo = [k for k in keys if k not in self.done()]
        if todo:
            _label(self.candidates, self.output, self.engine, self.workers, todo, self._loader(defects_of))
        self._asked.update(keys)
        done = self.done()
        return np.asarray([done.get(k, float("nan")) for k in keys], dtype=np.float64)

    def _loader(self, defects_of: Mapping[str, str]) -> Any:
        from defectspace.placement import parse_2dmd
        from defectspace.structure import placement_to_atoms

        lattice = self.lattice

        def load(ids: Sequence[str], source: Path | None) -> dict[str, Any]:
            out = {}
            for i in ids:
                atoms = placement_to_atoms(parse_2dmd([defects_of[i]], lattice)[0], lattice)
                atoms.pbc = (True, True, False)
                out[i] = atoms
            return out

        return load


def _label(
    candidates: Path, output: Path, engine: str, workers: int, ids: Sequence[str], loader: Any
) -> None:
    from defectspace.engines import label_structures

    label_structures(
        candidates, output, engine, workers=workers, ids=ids, structure_loader=loader, progress=False
    )
