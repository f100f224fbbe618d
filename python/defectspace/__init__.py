"""defectspace: the space of defect configurations in 2D crystals.

Exact symmetry-canonical keys of defect placements (C++ core), Siamese-network embeddings and
property predictors, after Ustyuzhanin and Shibaev, 2D Materials 12, 015007 (2025).
"""

from __future__ import annotations

from defectspace.canonical import (
    KEY_FORMAT_VERSION,
    Canonicalizer,
    CanonicalResult,
    DedupeResult,
    Enumeration,
    key_from_string,
    key_to_string,
)
from defectspace.lattice import DefectKind, Lattice
from defectspace.placement import (
    Defect,
    PlacementError,
    as_states,
    composition,
    format_2dmd,
    from_defects,
    parse_2dmd,
    to_defects,
)
from defectspace.symmetry import PointOperation, SymmetryGroup

__version__ = "0.1.0"

__all__ = [
    "KEY_FORMAT_VERSION",
    "CanonicalResult",
    "Canonicalizer",
    "DedupeResult",
    "Defect",
    "DefectKind",
    "Enumeration",
    "Lattice",
    "PlacementError",
    "PointOperation",
    "SymmetryGroup",
    "__version__",
    "as_states",
    "composition",
    "format_2dmd",
    "from_defects",
    "key_from_string",
    "key_to_string",
    "parse_2dmd",
    "to_defects",
]
