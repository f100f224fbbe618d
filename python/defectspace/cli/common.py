"""The layer every command goes through: declared inputs and outputs checked before any work,
and known errors turned into one line on stderr and exit status 2.

A command is registered with :func:`add_command` (its help shows a real example) and declares
its file arguments with :func:`add_input` and :func:`add_output`; :func:`check_arguments`
(called by :func:`defectspace.cli.main` before the handler) refuses a missing or empty input, an
output that is a folder where a file is written (or a file where a folder is), an output under a
file or in a folder this user cannot write, and an output that is one of the inputs, so that no
work is done (and nothing written) for a run that could not finish. Reading goes through
:mod:`defectspace.io` (one CSV reader: UTF-8 with or without byte order mark, LF or CRLF) and
writing through :func:`defectspace.io.atomic_path` (whole files, created with the umask's mode).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from defectspace.io import InputError

InputKind = Literal["placements", "table", "lattice", "embedder", "predictor", "ids", "structures",
                    "embeddings"]
"""What an input argument names:

* ``placements``: a CSV or Parquet table with ``id,defects``, or a CIF, a folder or a tar of CIFs;
* ``table``: a CSV or Parquet table with ``id,defects``;
* ``lattice``: a preset name or a unit-cell CIF (only a value ending in ``.cif`` is a file);
* ``embedder`` / ``predictor``: a checkpoint folder (or its metadata file);
* ``ids``: a file of ids, one per line or a CSV with an ``id`` column;
* ``structures``: a folder of CIF files;
* ``embeddings``: a CSV or Parquet table with columns ``emb_0`` ... (as ``embed`` writes).
"""

OutputKind = Literal["file", "folder", "folder-or-extxyz"]
"""What an output argument names: a file, a folder, or a folder unless the name ends in
``.extxyz`` (export)."""

_FOLDER_INPUTS = {"placements", "embedder", "predictor", "structures"}
_FOLDER_ONLY = {"structures"}


@dataclass(frozen=True)
class InputArgument:
    """A declared input argument of a command."""

    dest: str
    """Attribute of the parsed arguments."""
    label: str
    """How messages name it: ``input`` for a positional argument, else its option (``--lattice``)."""
    kind: InputKind


@dataclass(frozen=True)
class OutputArgument:
    """A declared output argument of a command."""

    dest: str
    label: str
    kind: OutputKind


def add_command(subparsers: Any, name: str, *, help: str, example: str,
                description: str | None = None) -> argparse.ArgumentParser:
    """A sub-command whose ``--help`` ends with ``example`` (a complete command line)."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        name, help=help, description=description or help[:1].upper() + help[1:] + ".",
        epilog=f"example:\n  {example}", formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(cli_inputs=(), cli_outputs=(), cli_example=example)
    return p


def _label(flags: tuple[str, ...]) -> str:
    longs = [f for f in flags if f.startswith("--")]
    return longs[0] if longs else flags[0] if flags[0].startswith("-") else "input"


def add_input(p: argparse._ActionsContainer, *flags: str, kind: InputKind, **kwargs: Any
              ) -> argparse.Action:
    """``p.add_argument(*flags, **kwargs)`` (``p`` a parser or a group of one), declared as an input
    that :func:`check_arguments` checks before the command runs."""
    action = p.add_argument(*flags, **kwargs)
    spec = InputArgument(action.dest, _label(flags), kind)
    p.set_defaults(cli_inputs=(*p.get_default("cli_inputs"), spec))
    return action


def add_output(p: argparse._ActionsContainer, *flags: str, kind: OutputKind = "file",
               **kwargs: Any) -> argparse.Action:
    """``p.add_argument(*flags, **kwargs)``, declared as an output that :func:`check_arguments`
    checks before the command runs."""
    action = p.add_argument(*flags, **kwargs)
    spec = OutputArgument(action.dest, _label(flags), kind)
    p.set_defaults(cli_outputs=(*p.get_default("cli_outputs"), spec))
    return action


def input_paths(args: argparse.Namespace) -> list[tuple[InputArgument, Path]]:
    """The declared inputs given on this command line that name files or folders."""
    out = []
    for spec in getattr(args, "cli_inputs", ()):
        value = getattr(args, spec.dest, None)
        values = value if isinstance(value, list) else [value]
        for v in values:
            if v is None or (spec.kind == "lattice" and not str(v).lower().endswith(".cif")):
                continue
            out.append((spec, Path(v)))
    return out


def check_input(spec: InputArgument, path: Path) -> None:
    """Refuses an input that does not exist, is empty, or is a file where a folder is read (or a
    folder where a file is)."""
    name = f"{spec.label} {path}" if spec.label != "input" else f"input {path}"
    if not path.exists():
        raise InputError(f"{name} does not exist")
    if path.is_dir():
        if spec.kind not in _FOLDER_INPUTS:
            raise InputError(f"{name} is a folder; expected a file")
        if not os.access(path, os.R_OK | os.X_OK):
            raise InputError(f"{name}: permission denied")
        return
    if spec.kind in _FOLDER_ONLY:
        raise InputError(f"{name} is a file; expected a folder")
    if not os.access(path, os.R_OK):
        raise InputError(f"{name}: permission denied")
    if path.stat().st_size == 0:
        raise InputError(f"{name} is empty")


def output_is_folder(kind: OutputKind, path: Path) -> bool:
    """Whether an output of this kind at this path is a folder."""
    return kind == "folder" or (kind == "folder-or-extxyz" and path.suffix.lower() != ".extxyz")


def check_output(spec: OutputArgument, path: Path) -> None:
    """Refuses an output that cannot be written: a folder where a file goes (or a file where a
    folder goes), a path under a file, or a place this user cannot write in."""
    name = f"{spec.label} {path}"
    folder = output_is_folder(spec.kind, path)
    if folder and path.exists() and not path.is_dir():
        raise InputError(f"{name} is a file; this output is a folder"
                         + (" (or a file name ending in .extxyz)" if spec.kind == "folder-or-extxyz"
                            else "") + ": remove the file or choose another name")
    if not folder and path.is_dir():
        raise InputError(f"{name} is a folder; this output is a file: give a file name")
    existing = path if folder and path.is_dir() else path.absolute().parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{name}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{name}: cannot write in {existing} (permission denied)")


_SHIPPED = {"embedder": "models", "predictor": "predictors"}
"""Folders under the package's ``data/`` holding the shipped checkpoints of each kind."""


def shipped_checkpoint(kind: InputKind, value: str) -> Path | None:
    """The shipped checkpoint an ``embedder`` / ``predictor`` input names by its folder name
    (``--model wse2_8x8``, ``--model wse2_8x8_formation_energy_per_site``), or None."""
    if kind not in _SHIPPED or not value or Path(value).exists() or "/" in value or "\\" in value:
        return None
    folder = Path(__file__).resolve().parents[1] / "data" / _SHIPPED[kind] / value
    return folder if folder.is_dir() else None


def _resolve_shipped(args: argparse.Namespace) -> None:
    """Replaces the name of a shipped checkpoint given as a model input by its folder."""
    for spec in getattr(args, "cli_inputs", ()):
        value = getattr(args, spec.dest, None)
        if value is None or spec.kind not in _SHIPPED:
            continue
        values = value if isinstance(value, list) else [value]
        resolved = [str(shipped_checkpoint(spec.kind, str(v)) or v) for v in values]
        setattr(args, spec.dest, resolved if isinstance(value, list) else resolved[0])


def check_arguments(args: argparse.Namespace) -> None:
    """Checks the declared inputs and outputs of a parsed command line before any work (a model
    input may name a shipped checkpoint by its folder name: :func:`shipped_checkpoint`)."""
    _resolve_shipped(args)
    inputs = input_paths(args)
    for spec, path in inputs:
        check_input(spec, path)
    read = {p.resolve() for _, p in inputs if p.is_file()}
    for spec in getattr(args, "cli_outputs", ()):
        value = getattr(args, spec.dest, None)
        if value is None or "://" in str(value):  # an fsspec URL is its filesystem's to check
            continue
        path = Path(value)
        check_output(spec, path)
        if path.resolve() in read:
            raise InputError(f"{spec.label} {path} is also an input of this command; choose another "
                             "output")


def one_line(exc: BaseException) -> str:
    """The message of a known error on one line; for an OSError with a file name, the file and
    the reason (``x.csv: Permission denied``)."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        text = f"{exc.filename}: {exc.strerror}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())
