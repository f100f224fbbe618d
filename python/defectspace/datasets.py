"""Where the 2DMD data is: the one data locator of the package.

The 2DMD files (``mos2_8x8.csv``, ``mos2_unrelaxed.tar.xz``, ...) are never copied into the
package. They are read from the folder named by the environment variable ``DEFECTSPACE_2DMD``
or, without it, from ``<checkout>/../shared/data/2dmd`` when defectspace runs from a checkout of
its repository (``pip install -e .``, ``PYTHONPATH=python``) or is called from inside one. Anywhere
else (an installed wheel called from another folder) there is no default: whatever needs the data
says so (:class:`DataNotFoundError`) instead of guessing a folder.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

ENV_VAR = "DEFECTSPACE_2DMD"
"""The environment variable naming the 2DMD folder."""

TABLE = "mos2_8x8.csv"
"""2DMD's table of MoS2 8x8 placements (columns id, density, defects, labels)."""

UNRELAXED = "mos2_unrelaxed.tar.xz"
"""2DMD's unrelaxed CIFs."""


class DataNotFoundError(FileNotFoundError):
    """The 2DMD data is not where the locator looked; the message says where and how to point to it."""


def _checkout(start: Path) -> Path | None:
    """The checkout of the defectspace repository holding ``start`` (None outside one)."""
    for folder in (start, *start.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "python" / "defectspace").is_dir():
            return folder
    return None


def checkout_data_dir() -> Path | None:
    """``<checkout>/../shared/data/2dmd`` of the checkout this module runs from, or else of the
    one the working folder is in; None outside any checkout."""
    root = _checkout(Path(__file__).resolve().parent) or _checkout(Path.cwd().resolve())
    return None if root is None else root.parent / "shared" / "data" / "2dmd"


def find_2dmd(name: str = TABLE) -> Path:
    """The path of 2DMD file ``name`` (default: the table).

    Raises:
        DataNotFoundError: ``DEFECTSPACE_2DMD`` names a folder without the file, or it is unset
            and there is no checkout default holding it.
    """
    env = os.environ.get(ENV_VAR)
    if env:
        folder, how = Path(env), f"{ENV_VAR}={env}"
    else:
        default = checkout_data_dir()
        if default is None:
            raise DataNotFoundError(f"2DMD data not found: set {ENV_VAR} to the folder holding "
                                    f"{name} (outside a checkout of defectspace there is no default)")
        folder, how = default, f"the checkout's default; set {ENV_VAR} to use another folder"
    path = folder / name
    if not path.is_file():
        raise DataNotFoundError(f"2DMD data not found: {path} does not exist ({how})")
    return path


def describe_file(path: str | Path) -> dict[str, str]:
    """A portable record of a data file: its name and sha256 (no folder of this machine)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return {"file": Path(path).name, "sha256": h.hexdigest()}
