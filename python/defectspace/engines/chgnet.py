"""CHGNet single points (``chgnet``, pretrained weights from its wheel; the ``chgnet`` extra)."""

from __future__ import annotations

import importlib.metadata
from typing import Any

from defectspace.engines.base import CalculatorEngine


class CHGNetEngine(CalculatorEngine):
    """CHGNet (``chgnet`` package, pretrained weights from its wheel), CPU, single point."""

    name = "chgnet"
    requires = ("chgnet",)
    """Packages the engine imports (checked before any work by the labelling driver)."""

    def __init__(self, model: str = "0.3.0") -> None:
        super().__init__()
        self.model = model

    def _make_calculator(self) -> Any:
        from chgnet.model.dynamics import CHGNetCalculator
        from chgnet.model.model import CHGNet

        return CHGNetCalculator(CHGNet.load(model_name=self.model, verbose=False), use_device="cpu")

    def version(self) -> str:
        return f"chgnet {importlib.metadata.version('chgnet')}"

    def settings(self) -> dict[str, Any]:
        return {"model": self.model, "device": "cpu", "calculation": "single point, unrelaxed"}
