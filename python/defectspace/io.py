"""Reading placements from CSV, Parquet or structure files, and the one atomic file writer."""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal

import numpy as np
from numpy.typing import NDArray

from defectspace.lattice import Lattice
from defectspace.placement import PlacementError, parse_2dmd

if TYPE_CHECKING:
    import pandas as pd

OnError = Literal["fail", "skip"]
STRUCTURE_SUFFIXES = (".cif", ".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz")


@dataclass
class PlacementTable:
    """Placements read from a file, one per input row that parsed, plus the rows that did not."""

    ids: list[str]
    """Identifier of each parsed row."""
    states: NDArray[np.uint8]
    """(n, n_sites) uint8 placements of the parsed rows."""
    extra: pd.DataFrame
    """The parsed rows' input columns (all of them, ``id`` and ``defects`` included)."""
    errors: list[tuple[int, str, str]] = field(default_factory=list)
    """(line number in the file, id, reason) of each row that could not be used."""


class InputError(ValueError):
    """An input file that cannot be used; the message names the file and line."""


def is_structure_input(path: Path) -> bool:
    """Whether a path is a CIF, a folder or a tar of CIFs (rather than a CSV of 2DMD strings)."""
    name = path.name.lower()
    return path.is_dir() or any(name.endswith(s) for s in STRUCTURE_SUFFIXES)


def read_placements(path: str | Path, lattice: Lattice, on_error: OnError = "fail") -> PlacementTable:
    """Placements from a CSV or Parquet table with ``id,defects`` (2DMD form) or from CIF structures.

    Rows that cannot be parsed raise :class:`InputError` naming their line (``on_error="fail"``)
    or are listed in :attr:`PlacementTable.errors` (``"skip"``); none is dropped silently.
    Structures whose mapping onto the lattice is ambiguous are errors too, with the reason.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"input {p} does not exist")
    if is_structure_input(p):
        return _read_structures(p, lattice, on_error)
    return _read_table(p, lattice, on_error)


def _read_table(path: Path, lattice: Lattice, on_error: OnError) -> PlacementTable:
    """A CSV or Parquet table with id,defects; errors name the CSV line or the Parquet row."""
    import pandas as pd

    parquet = path.suffix.lower() == ".parquet"
    try:
        if parquet:
            df = pd.read_parquet(path)
            for col in ("id", "defects"):
                if col in df.columns:
                    df[col] = df[col].fillna("").astype(str)
        else:
            df = pd.read_csv(path, dtype={"id": str, "defects": str}, keep_default_na=False)
    except Exception as exc:  # pandas and pyarrow raise several parser error types
        raise InputError(f"cannot read {'Parquet' if parquet else 'CSV'} {path}: {exc}") from exc
    # the place of row r in the file: CSV line (header is line 1) or 1-based Parquet row
    where, first = ("row", 1) if parquet else ("line", 2)
    missing = [c for c in ("id", "defects") if c not in df.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; found {list(df.columns)}")
    keep = np.ones(len(df), dtype=bool)
    states = np.zeros((len(df), lattice.n_sites), dtype=np.uint8)
    errors: list[tuple[int, str, str]] = []
    texts = df["defects"].tolist()
    ids = df["id"].tolist()
    try:
        states = parse_2dmd(texts, lattice)
    except PlacementError:
        for r, text in enumerate(texts):  # find every bad row, not only the first
            try:
                states[r] = parse_2dmd([text], lattice)[0]
            except PlacementError as exc:
                line = r + first
                reason = str(exc).removeprefix("row 0: ")
                if on_error == "fail":
                    raise InputError(f"{path}, {where} {line} (id {ids[r]}): {reason}") from None
                errors.append((line, ids[r], reason))
                keep[r] = False
    dup = df["id"].duplicated(keep="first").to_numpy() & keep
    for r in map(int, np.flatnonzero(dup)):
        reason = f"duplicate id {ids[r]!r}"
        if on_error == "fail":
            raise InputError(f"{path}, {where} {r + first}: {reason}")
        errors.append((r + first, str(ids[r]), reason))
        keep[r] = False
    kept = df[keep].reset_index(drop=True)
    return PlacementTable([str(i) for i in kept["id"]], np.ascontiguousarray(states[keep]), kept,
                          errors)


def _read_structures(path: Path, lattice: Lattice, on_error: OnError) -> PlacementTable:
    import pandas as pd

    from defectspace.placement import format_2dmd
    from defectspace.structure import map_structure, read_structures

    ids: list[str] = []
    rows: list[NDArray[np.uint8]] = []
    errors: list[tuple[int, str, str]] = []
    for index, item in enumerate(read_structures(path)):
        name, atoms = item
        try:
            mapping = map_structure(atoms, lattice)
        except ValueError as exc:
            if on_error == "fail":
                raise InputError(f"{path}: structure {index + 1} ({name}): {exc}") from None
            errors.append((index + 1, name, str(exc)))
            continue
        if mapping.ambiguous:
            reason = "ambiguous mapping: " + "; ".join(mapping.reasons)
            if on_error == "fail":
                raise InputError(f"{path}: structure {index + 1} ({name}): {reason}")
            errors.append((index + 1, name, reason))
            continue
        ids.append(name)
        rows.append(mapping.states)
    states = np.array(rows, dtype=np.uint8).reshape(len(rows), lattice.n_sites)
    extra = pd.DataFrame({"id": ids, "defects": format_2dmd(states, lattice)})
    return PlacementTable(ids, states, extra, errors)


def report_errors(table: PlacementTable, stream: IO[str] | None = None) -> None:
    """Prints skipped rows (line, id, reason) to stderr."""
    out = stream or sys.stderr
    for line, ident, reason in table.errors:
        print(f"skipped line {line} (id {ident}): {reason}", file=out)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A new empty file beside ``path`` to write by name; it replaces ``path`` (fsynced first) only
    if the block finishes, and is removed otherwise. The one atomic writer of the package.

    The file is created like a plain ``open(path, "w")`` would create it: mode 0o666 less the
    umask (``tempfile.mkstemp`` would make it 0o600). Its name is unique per process and call, so
    concurrent writers of different files never collide.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically (:func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Writes ``text`` (UTF-8) to ``path`` atomically (:func:`atomic_path`)."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_csv_atomic(df: pd.DataFrame, path: str | Path) -> None:
    """Writes a DataFrame as CSV so that a kill never leaves a half-written file."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
