from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from defectspace import Canonicalizer, Lattice, format_2dmd
from defectspace.pipeline.screening import ScreenConfig, partition_of, screen
from helpers import assert_invariant

pytest.importorskip("pyarrow")
LAT = Lattice.preset("MoS2", (8, 8))


def fake_scorer(states: np.ndarray) -> dict[str, np.ndarray]:
    """A deterministic invariant stand-in for embedder + predictors."""
    counts = np.stack([(states == k).sum(axis=1) for k in range(1, 5)], axis=1).astype(np.float32)
    last = states.shape[1] - 1 - np.argmax(states[:, ::-1] != 0, axis=1)  # of the canonical form
    gap = counts @ np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32) + 0.001 * last
    return {"emb": counts, "fake_gap": gap}


def config(**kw: object) -> ScreenConfig:
    base: dict[str, object] = {"lattice": LAT.describe(), "source": "random",
                               "compositions": ((0, 1, 2, 0), (1, 0, 1, 1)), "n": 3000, "seed": 3,
                               "chunk_size": 700, "n_partitions": 4}
    base.update(kw)
    return ScreenConfig(**base)  # type: ignore[arg-type]


def test_random_screen_dedupes_exactly_and_matches_brute_counts(tmp_path: Path) -> None:
    s = screen(config(), tmp_path / "out.parquet", scorer=fake_scorer)
    df = pd.read_parquet(tmp_path / "out.parquet")
    c = Canonicalizer(LAT)
    # regenerate the same placements directly and dedupe them in one go
    from defectspace.pipeline.screening import _generate

    cfg = config()
    allx = np.concatenate([_generate(cfg, c, i) for i in range(5)])
    dd = c.dedupe(allx)
    assert s.generated == 3000 and s.distinct == len(dd.counts) == len(df) == s.kept
    assert df["count"].sum() == 3000
    assert df["canonical_key"].is_unique
    by_key = dict(zip(df["canonical_key"], df["count"], strict=True))
    from defectspace.canonical import key_to_string

    for k, n in zip(key_to_string(dd.keys), dd.counts, strict=True):
        assert by_key[k] == n
    assert {f"emb_{j}" for j in range(4)} <= set(df.columns)
    assert not (tmp_path / "out.parquet.work").exists()


def test_class_split_over_chunks_is_kept_once(tmp_path: Path) -> None:
    c = Canonicalizer(LAT)
    base = c.sample({"S->V": 2, "Mo->W": 1}, 3, seed=1)
    images = c.random_images(np.repeat(base, 4, axis=0), seed=2).images  # 12 rows, 4 per class
    src = tmp_path / "in.csv"
    ids = [f"x{i}" for i in range(12)]
    pd.DataFrame({"id": ids, "defects": format_2dmd(images, LAT)}).to_csv(src, index=False)
    cfg = config(source="file", input_path=str(src), chunk_size=5, n_partitions=3, n=0,
                 compositions=())
    s = screen(cfg, tmp_path / "o.parquet", scorer=fake_scorer)
    df = pd.read_parquet(tmp_path / "o.parquet")
    assert s.distinct == len({k.tobytes() for k in c.keys(base)}) == len(df)
    assert sorted(df["count"]) == [4, 4, 4]
    # rows x0-x3, x4-x7, x8-x11 are the three classes; chunks of 5 split the last two classes;
    # the first occurrence in file order names each class
    assert set(df["id"]) == {"x0", "x4", "x8"}


def test_property_ranges_filter(tmp_path: Path) -> None:
    cfg = config(ranges=(("fake_gap", 0.85, 0.95),))
    s = screen(cfg, tmp_path / "o.parquet", scorer=fake_scorer)
    df = pd.read_parquet(tmp_path / "o.parquet")
    assert 0 < s.kept < s.distinct
    assert ((df["fake_gap"] >= 0.85) & (df["fake_gap"] <= 0.95)).all()
    with pytest.raises(ValueError, match="range on 'nope'"):
        screen(config(ranges=(("nope", 0, 1),)), tmp_path / "p.parquet", scorer=fake_scorer)


def test_resume_after_failure_gives_identical_output(tmp_path: Path) -> None:
    clean = tmp_path / "clean.parquet"
    screen(config(), clean, scorer=fake_scorer)
    calls = {"n": 0}

    def failing(states: np.ndarray) -> dict[str, np.ndarray]:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("killed")
        return fake_scorer(states)

    out = tmp_path / "resumed.parquet"
    with pytest.raises(RuntimeError, match="killed"):
        screen(config(), out, scorer=failing)
    work = tmp_path / "resumed.parquet.work"
    done = sorted((work / "out").glob("*.parquet"))
    assert len(done) == 2
    mtimes = {p: p.stat().st_mtime_ns for p in done}
    chunk_files = {p: p.stat().st_mtime_ns for p in (work / "keys").rglob("*.parquet")}
    screen(config(), out, scorer=fake_scorer, keep_work=True)
    assert {p: p.stat().st_mtime_ns for p in done} == mtimes  # not recomputed
    assert {p: p.stat().st_mtime_ns for p in (work / "keys").rglob("*.parquet")} == chunk_files
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(clean))
    assert out.read_bytes() == clean.read_bytes()
    with pytest.raises(ValueError, match="other arguments"):
        screen(config(seed=4), out, scorer=fake_scorer, keep_work=True)


KILL_SCRIPT = """
import sys, time, numpy as np
sys.path.insert(0, {tests!r})
from test_screening import config, fake_scorer
from defectspace.pipeline.screening import screen
def slow(states):
    time.sleep(0.4)
    return fake_scorer(states)
screen(config(n_partitions=8), sys.argv[1], scorer=slow if sys.argv[2] == "slow" else fake_scorer)
"""


def test_resume_after_sigkill(tmp_path: Path) -> None:
    script = tmp_path / "run.py"
    script.write_text(KILL_SCRIPT.format(tests=str(Path(__file__).parent)))
    out = tmp_path / "k.parquet"
    proc = subprocess.Popen([sys.executable, str(script), str(out), "slow"])
    work = tmp_path / "k.parquet.work" / "out"
    deadline = time.time() + 60
    while time.time() < deadline and len(list(work.glob("*.parquet"))) < 2:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    assert 0 < len(list(work.glob("*.parquet"))) < 8
    subprocess.run([sys.executable, str(script), str(out), "fast"], check=True)
    clean = tmp_path / "c.parquet"
    subprocess.run([sys.executable, str(script), str(clean), "fast"], check=True)
    assert out.read_bytes() == clean.read_bytes()


def test_tasks_give_the_core_and_torch_the_task_thread_count(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside Dask workers of one thread each, the tasks ran the core with n_threads=0: every
    worker used every core. Each task now gets its worker's share."""
    import json
    from dataclasses import asdict

    import torch
    from defectspace import _core
    from defectspace.pipeline import screening

    seen: dict[str, list[int]] = {"canonicalizer": [], "histogram": [], "trees": [], "torch": []}

    class SpyCanonicalizer(Canonicalizer):
        def __init__(self, lattice: Lattice, subgroup: str = "full", n_threads: int = 0) -> None:
            seen["canonicalizer"].append(n_threads)
            super().__init__(lattice, subgroup, n_threads)

    def spy(name: str, fn: Any) -> Any:
        def wrapped(*args: Any, n_threads: int = 0) -> Any:
            seen[name].append(n_threads)
            return fn(*args, n_threads=n_threads)
        return wrapped

    set_threads = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (seen["torch"].append(n), set_threads(n)))
    monkeypatch.setattr(screening, "Canonicalizer", SpyCanonicalizer)
    monkeypatch.setattr(_core, "defect_pair_histogram", spy("histogram", _core.defect_pair_histogram))
    monkeypatch.setattr(_core, "predict_tree_ensemble", spy("trees", _core.predict_tree_ensemble))
    cfg_json = json.dumps(asdict(config(n=700)), sort_keys=True)
    screening.run_chunk(cfg_json, str(tmp_path), 0, 1)
    assert seen["canonicalizer"] == [1]
    scorer = screening.default_scorer(None, None, LAT, n_threads=1)
    threads_before = torch.get_num_threads()
    x = Canonicalizer(LAT).sample({"S->V": 2, "Mo->W": 1}, 5, seed=0)
    cols = scorer(x)
    assert set(cols) == {"emb", "homo_lumo_gap", "formation_energy_per_site"}
    assert seen["histogram"] and set(seen["histogram"]) == {1}
    assert seen["trees"] and set(seen["trees"]) == {1}
    assert seen["torch"][0] == 1  # the embedder ran with one torch thread
    assert torch.get_num_threads() == threads_before  # restored after scoring


@pytest.mark.slow
def test_dask_local_cluster_gives_the_same_output(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    local = tmp_path / "local.parquet"
    dask_out = tmp_path / "dask.parquet"
    screen(config(), local, scorer=fake_scorer)
    s = screen(config(), dask_out, scorer=fake_scorer, scheduler="local", n_workers=2)
    assert s.distinct == len(pd.read_parquet(dask_out))
    assert s.threads_per_task == 1  # LocalCluster workers of one thread: one thread per task
    assert local.read_bytes() == dask_out.read_bytes()


def test_bad_rows_reported_or_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from defectspace.cli import main

    src = tmp_path / "in.csv"
    src.write_text("id,defects\na,vac:17:S->V\nb,vac:0:S->V\nc,vac:5:S->V\n")
    out = tmp_path / "o.parquet"
    assert main(["screen", "--input", str(src), "-o", str(out)]) == 2
    assert "line 3 (id b)" in capsys.readouterr().err and not out.exists()


def test_partitions_are_a_function_of_the_key() -> None:
    c = Canonicalizer(LAT)
    x = c.sample({"S->V": 3}, 500, seed=0)
    assert_invariant(lambda s: partition_of(c.keys(s), 7), x, c, seed=1)
    assert len(set(partition_of(c.keys(x), 7).tolist())) == 7


def test_parquet_input_rows_are_checked_like_csv(tmp_path: Path) -> None:
    from defectspace.io import InputError, read_placements

    src = tmp_path / "in.parquet"
    pd.DataFrame({"id": ["a", "b", "c"],
                  "defects": ["vac:17:S->V", "vac:0:S->V", "vac:5:S->V"]}).to_parquet(src)
    with pytest.raises(InputError, match="row 2 \\(id b\\): site 0 holds Mo, not S"):
        read_placements(src, LAT)
    table = read_placements(src, LAT, "skip")
    assert table.ids == ["a", "c"] and table.errors[0][:2] == (2, "b")
    s = screen(config(source="file", input_path=str(src), n=0, compositions=()),
               tmp_path / "o.parquet", scorer=fake_scorer, table=table)
    assert s.generated == 2 and s.distinct == 1
