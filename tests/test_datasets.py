"""The one data locator: DEFECTSPACE_2DMD, else the checkout's ../shared/data/2dmd, else an error."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from defectspace import datasets
from defectspace.datasets import ENV_VAR, DataNotFoundError, describe_file, find_2dmd


def test_outside_a_checkout_without_the_variable_there_is_no_default(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    # as installed from a wheel: the module in a site-packages folder, no checkout above it
    monkeypatch.setattr(datasets, "__file__", str(tmp_path / "lib" / "site-packages" / "defectspace"
                                                  / "datasets.py"))
    assert datasets.checkout_data_dir() is None
    with pytest.raises(DataNotFoundError, match=f"set {ENV_VAR} to the folder holding mos2_8x8.csv"):
        find_2dmd()


def test_the_variable_wins_and_is_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          data_2dmd: Path) -> None:
    assert find_2dmd() == data_2dmd / "mos2_8x8.csv"  # the fixture set the variable
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    with pytest.raises(DataNotFoundError, match=f"{tmp_path / 'mos2_8x8.csv'} does not exist"):
        find_2dmd()


def test_a_checkout_finds_the_shared_folder_beside_it(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    repo = tmp_path / "repo"
    (repo / "python" / "defectspace").mkdir(parents=True)
    (repo / "pyproject.toml").write_text("")
    shared = tmp_path / "shared" / "data" / "2dmd"
    shared.mkdir(parents=True)
    (shared / "mos2_8x8.csv").write_text("id,defects\n")
    monkeypatch.setattr(datasets, "__file__", str(repo / "python" / "defectspace" / "datasets.py"))
    assert find_2dmd() == shared / "mos2_8x8.csv"
    assert describe_file(shared / "mos2_8x8.csv") == {
        "file": "mos2_8x8.csv", "sha256": hashlib.sha256(b"id,defects\n").hexdigest()}
