"""SevenNet-0 single points (``sevenn``, weights from its wheel; the ``label`` extra)."""

from __future__ import annotations

import importlib.metadata
from typing import Any

from defectspace.engines.base import CalculatorEngine


class SevenNetEngine(CalculatorEngine):
    """SevenNet-0 (``sevenn`` package, weights from its wheel), CPU, single point."""

    name = "sevenn"
    requires = ("sevenn",)
    """Packages the engine imports (checked before any work by the labelling driver)."""

    def __init__(self, model: str = "7net-0") -> None:
        super().__init__()
        self.model = model

    def _make_calculator(self) -> Any:
        from sevenn.calculator import SevenNetCalculator

        return SevenNetCalculator(self.model, device="cpu")

    def version(self) -> str:
        return f"sevenn {importlib.metadata.version('sevenn')}"

    def settings(self) -> dict[str, Any]:
        return {"model": self.model, "device": "cpu", "calculation": "single point, unrelaxed"}
