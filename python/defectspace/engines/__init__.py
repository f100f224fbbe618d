"""Labels from physics engines (the ``label`` extra): SevenNet-0 and CHGNet energies with 2DMD's
formation energy, GFN1-xTB gaps, computed by a resumable, parallel driver.

``from defectspace.engines import label_structures``.
"""

from __future__ import annotations

from defectspace.engines.driver import label_structures, make_engine, read_label_csv

__all__ = ["label_structures", "make_engine", "read_label_csv"]
