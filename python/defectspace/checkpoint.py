"""Checkpoint folders: data files beside one JSON metadata file that names the format, its version
and the sha256 of every data file. The one reader and writer of the embedder's and the property
predictors' checkpoints (:mod:`defectspace.ml.embedder`, :mod:`defectspace.predict.predictor`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from defectspace.io import write_bytes_atomic, write_text_atomic


@dataclass(frozen=True)
class CheckpointFormat:
    """What a checkpoint folder holds and how its messages name it."""

    name: str
    """Value of the metadata's ``format`` key, e.g. ``"defectspace-embedder"``."""
    version: int
    """Value of ``format_version``; any other is refused."""
    meta_file: str
    """Name of the metadata file in the folder, e.g. ``"embedder.json"``."""
    what: str
    """What the checkpoint is, for messages, e.g. ``"embedder"``."""


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def read_metadata(path: str | Path, fmt: CheckpointFormat) -> tuple[dict[str, Any], Path]:
    """The metadata of the checkpoint folder ``path`` (or of its metadata file) and the folder.

    Raises:
        ValueError: no metadata file, invalid JSON, another format or another format version.
    """
    p = Path(path)
    meta_path = p / fmt.meta_file if p.is_dir() else p
    if not meta_path.is_file():
        raise ValueError(f"no {fmt.what} checkpoint at {p} (expected {fmt.meta_file})")
    try:  # a byte order mark (an editor's) is no reason to refuse the file
        meta = json.loads(meta_path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{fmt.what} metadata {meta_path} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != fmt.name:
        raise ValueError(f"{meta_path} is not a defectspace {fmt.what} checkpoint")
    version = meta.get("format_version")
    if version != fmt.version:
        raise ValueError(f"{fmt.what} checkpoint {meta_path} has format version {version!r}; this "
                         f"release reads version {fmt.version}")
    return meta, meta_path.parent


def read_checked(folder: Path, name: str, sha256: object, fmt: CheckpointFormat) -> bytes:
    """The bytes of data file ``name`` of a checkpoint folder, refused unless their sha256 is the
    one its metadata recorded.

    Raises:
        ValueError: the file is missing or its sha256 differs (corrupt or modified).
    """
    path = folder / name
    if not path.is_file():
        raise ValueError(f"{fmt.what} file {path} is missing")
    data = path.read_bytes()
    digest = sha256_hex(data)
    if digest != sha256:
        raise ValueError(f"{fmt.what} file {path} is corrupt: its sha256 {digest[:12]}... does not "
                         f"match the checksum in {fmt.meta_file} ({str(sha256)[:12]}...)")
    return data


def write_checkpoint(folder: str | Path, fmt: CheckpointFormat, meta: Mapping[str, Any],
                     files: Mapping[str, bytes]) -> Path:
    """Writes the data files, then the metadata (``format``, ``format_version`` and ``meta``), each
    atomically, into ``folder``; returns the folder. ``meta`` records the files' checksums
    (:func:`sha256_hex`) under keys of the format's choosing."""
    out = Path(folder)
    for name, data in files.items():
        write_bytes_atomic(out / name, data)
    full = {"format": fmt.name, "format_version": fmt.version, **meta}
    write_text_atomic(out / fmt.meta_file, json.dumps(full, indent=1, sort_keys=True) + "\n")
    return out
