"""Reading placements from CSV, Parquet or structure files, and the one atomic file writer."""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator, Sequence
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


# ----------------------------------------------------------------------------- the one reader
def _one_line(text: str) -> str:
    """A message on one line (pandas and pyarrow messages can span several)."""
    return " ".join(str(text).split())


def _check_file(path: Path) -> None:
    """InputError naming an input file that is missing, a folder or empty."""
    if not path.exists():
        raise InputError(f"input {path} does not exist")
    if path.is_dir():
        raise InputError(f"input {path} is a folder; expected a file")
    if path.stat().st_size == 0:
        raise InputError(f"input {path} is empty")


def _file_bytes(path: Path) -> bytes:
    """The bytes of an input file (:func:`_check_file`; only blanks also count as empty)."""
    _check_file(path)
    data = path.read_bytes()
    if not data.strip(b" \t\r\n\xef\xbb\xbf"):
        raise InputError(f"input {path} is empty")
    return data


def decode_text(data: bytes, name: str) -> str:
    """UTF-8 text of a file's bytes, without its byte order mark and with ``\\n`` line ends
    (``\\r\\n`` and ``\\r`` converted); InputError naming ``name`` for binary or non-UTF-8 bytes."""
    nul = data.find(b"\0")
    if nul >= 0:
        raise InputError(f"{name} is not a text file (a NUL byte at byte {nul})")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{name} is not UTF-8 text (byte {exc.start}: {data[exc.start:exc.start + 1]!r})"
                         ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def parse_csv_bytes(data: bytes, name: str, required: Sequence[str] = ("id", "defects")) -> pd.DataFrame:
    """The one CSV parser of the package: a table of strings (``id`` and ``defects`` always read as
    text, empty cells as ``""``) from a file's bytes. A UTF-8 byte order mark and CRLF line ends
    are accepted; empty, binary or non-UTF-8 files, malformed CSV and missing ``required``
    columns raise :class:`InputError` naming ``name``."""
    import io as _io

    import pandas as pd

    if not data.strip(b" \t\r\n\xef\xbb\xbf"):
        raise InputError(f"{name} is empty; expected a CSV with columns {','.join(required) or '...'}")
    nul = data.find(b"\0")
    if nul >= 0:
        raise InputError(f"{name} is not a text file (a NUL byte at byte {nul})")
    try:  # pandas decodes (utf-8-sig drops a byte order mark) and splits LF, CRLF and CR lines
        df = pd.read_csv(_io.BytesIO(data), encoding="utf-8-sig", encoding_errors="strict",
                         dtype={c: str for c in ("id", "defects")}, keep_default_na=False)
    except UnicodeDecodeError:
        decode_text(data, name)  # names the first byte that is not UTF-8
        raise
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise InputError(f"cannot read CSV {name}: {_one_line(str(exc))}") from None
    _require_columns(df, name, required)
    return df


def _require_columns(df: pd.DataFrame, name: str, required: Sequence[str]) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise InputError(f"{name}: missing column(s) {missing}; found {[str(c) for c in df.columns]} "
                         f"(expected a table with columns {','.join(required)})")


def read_table(path: str | Path, required: Sequence[str] = ("id", "defects"),
               columns: Sequence[str] | None = None) -> pd.DataFrame:
    """A CSV (:func:`parse_csv_bytes`) or Parquet (``.parquet``; needs pyarrow) table with the
    ``required`` columns; ``columns`` limits what a Parquet file reads. ``id`` and ``defects`` are
    strings. Errors are :class:`InputError` naming the file."""
    p = Path(path)
    if p.suffix.lower() != ".parquet":
        return parse_csv_bytes(_file_bytes(p), str(p), required)
    import pyarrow as pa  # a missing pyarrow names the package (pandas would say 'engine')
    import pyarrow.parquet as pq

    _check_file(p)
    try:
        df = pq.read_table(p, columns=list(columns) if columns is not None else None).to_pandas()
    except (pa.ArrowException, OSError, ValueError, KeyError) as exc:
        raise InputError(f"cannot read Parquet {p}: {_one_line(str(exc))}") from None
    _require_columns(df, str(p), required)
    for col in ("id", "defects"):
        if col in df.columns:
            df[col] = df[col].fillna("").astype(str)
    return df


def read_ids(path: str | Path) -> list[str]:
    """Ids from a file: one per line, or a CSV whose header has an ``id`` column (BOM and CRLF
    accepted; blank lines ignored). Errors name the file."""
    p = Path(path)
    data = _file_bytes(p)
    lines = [ln.strip() for ln in decode_text(data, str(p)).split("\n") if ln.strip()]
    if lines and "," in lines[0] and "id" in [c.strip() for c in lines[0].split(",")]:
        return [str(i) for i in parse_csv_bytes(data, str(p), ("id",))["id"]]
    return lines


def _read_table(path: Path, lattice: Lattice, on_error: OnError) -> PlacementTable:
    """A CSV or Parquet table with id,defects; errors name the CSV line or the Parquet row."""
    return placements_from_table(read_table(path), path, lattice, on_error)


def placements_from_table(df: pd.DataFrame, path: Path, lattice: Lattice, on_error: OnError = "fail"
                          ) -> PlacementTable:
    """The placements of a table :func:`read_table` read from ``path`` (see
    :func:`read_placements`); errors name the CSV line or the Parquet row."""
    parquet = path.suffix.lower() == ".parquet"
    # the place of row r in the file: CSV line (header is line 1) or 1-based Parquet row
    where, first = ("row", 1) if parquet else ("line", 2)
    keep = np.ones(len(df), dtype=bool)
    errors: list[tuple[int, str, str]] = []
    texts = df["defects"].tolist()
    ids = df["id"].tolist()
    try:
        states = parse_2dmd(texts, lattice)
    except PlacementError:
        states = np.zeros((len(df), lattice.n_sites), dtype=np.uint8)
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
    del texts
    if keep.all():  # no copies of a large table that is all good
        return PlacementTable([str(i) for i in ids], states, df, errors)
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
