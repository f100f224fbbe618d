from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
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


class FakeScorer:
    """A deterministic invariant stand-in for the predictors and the embedder; counts the rows it
    is asked about per column."""

    names = ("fake_gap", "fake_other")

    def __init__(self) -> None:
        self.rows: dict[str, int] = {"fake_gap": 0, "fake_other": 0, "emb": 0}

    @staticmethod
    def counts(states: np.ndarray) -> np.ndarray:
        return np.stack([(states == k).sum(axis=1) for k in range(1, 5)], axis=1).astype(np.float32)

    def predict(self, states: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
        last = states.shape[1] - 1 - np.argmax(states[:, ::-1] != 0, axis=1)  # of the canonical form
        gap = self.counts(states) @ np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32) + 0.001 * last
        out = {"fake_gap": gap.astype(np.float64), "fake_other": 2.0 * last.astype(np.float64)}
        for name in names:
            self.rows[name] += len(states)
        return {name: out[name] for name in names}

    def embed(self, states: np.ndarray) -> np.ndarray:
        self.rows["emb"] += len(states)
        return self.counts(states)


fake_scorer = FakeScorer()


def config(**kw: object) -> ScreenConfig:
    base: dict[str, object] = {"lattice": LAT.describe(), "source": "random",
                               "compositions": ((0, 1, 2, 0), (1, 0, 1, 1)), "n": 3000, "seed": 3,
                               "chunk_size": 700, "n_partitions": 4}
    base.update(kw)
    return ScreenConfig(**base)  # type: ignore[arg-type]


def test_random_screen_dedupes_exactly_and_matches_brute_counts(tmp_path: Path) -> None:
    s = screen(config(embed=True), tmp_path / "out.parquet", scorer=FakeScorer())
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


class FailingScorer(FakeScorer):
    """Fails on its third call to predict."""

    def predict(self, states: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls == 3:
            raise RuntimeError("killed")
        return super().predict(states, names)


def test_resume_after_failure_gives_identical_output(tmp_path: Path) -> None:
    clean = tmp_path / "clean.parquet"
    screen(config(), clean, scorer=fake_scorer)
    out = tmp_path / "resumed.parquet"
    with pytest.raises(RuntimeError, match="killed"):
        screen(config(), out, scorer=FailingScorer(), n_workers=1)
    work = tmp_path / "resumed.parquet.work"
    done = sorted((work / "out").glob("*.arrow"))
    assert len(done) == 2
    mtimes = {p: p.stat().st_mtime_ns for p in done}
    chunk_files = {p: p.stat().st_mtime_ns for p in (work / "keys").glob("*.arrow")}
    assert len(chunk_files) == 5
    screen(config(), out, scorer=fake_scorer, keep_work=True)
    assert {p: p.stat().st_mtime_ns for p in done} == mtimes  # not recomputed
    assert {p: p.stat().st_mtime_ns for p in (work / "keys").glob("*.arrow")} == chunk_files
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(clean))
    assert out.read_bytes() == clean.read_bytes()
    with pytest.raises(ValueError, match="other arguments"):
        screen(config(seed=4), out, scorer=fake_scorer, keep_work=True)


KILL_SCRIPT = """
import sys, time, numpy as np
sys.path.insert(0, {tests!r})
from test_screening import FakeScorer, config
from defectspace.pipeline.screening import screen
class Slow(FakeScorer):
    def predict(self, states, names):
        time.sleep(0.4)
        return super().predict(states, names)
screen(config(n_partitions=8, ranges=(("fake_gap", 0.0, 2.0),)), sys.argv[1],
       scorer=Slow() if sys.argv[2] == "slow" else FakeScorer(), n_workers=2)
"""


def test_resume_after_sigkill(tmp_path: Path) -> None:
    script = tmp_path / "run.py"
    script.write_text(KILL_SCRIPT.format(tests=str(Path(__file__).parent)))
    out = tmp_path / "k.parquet"
    proc = subprocess.Popen([sys.executable, str(script), str(out), "slow"])
    work = tmp_path / "k.parquet.work" / "out"
    deadline = time.time() + 60
    while time.time() < deadline and len(list(work.glob("*.arrow"))) < 2:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    assert 0 < len(list(work.glob("*.arrow"))) < 8
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

    monkeypatch.setattr(screening, "Canonicalizer", SpyCanonicalizer)
    monkeypatch.setattr(_core, "defect_pair_histogram", spy("histogram", _core.defect_pair_histogram))
    monkeypatch.setattr(_core, "predict_tree_ensemble", spy("trees", _core.predict_tree_ensemble))
    monkeypatch.setattr(_core, "predict_tree_ensembles", spy("trees", _core.predict_tree_ensembles))
    cfg_json = json.dumps(asdict(config(n=700)), sort_keys=True)
    screening.run_chunk(cfg_json, str(tmp_path), 0, 1)
    assert seen["canonicalizer"] == [1]
    scorer = screening.ModelScorer(screening.default_scorer(None, None, LAT).models, LAT, n_threads=1)
    threads_before = torch.get_num_threads()
    x = Canonicalizer(LAT).sample({"S->V": 2, "Mo->W": 1}, 5, seed=0)
    cols = scorer.predict(x, scorer.names)
    assert set(cols) == {"homo_lumo_gap", "formation_energy_per_site"}
    assert seen["histogram"] == [1]  # one histogram shared by both predictors and the prior
    assert seen["trees"] and set(seen["trees"]) == {1}
    monkeypatch.setattr(torch, "set_num_threads", lambda n, f=torch.set_num_threads: (
        seen["torch"].append(n), f(n)))
    assert scorer.embed(x).shape == (5, 12)
    assert seen["torch"][0] == 1
    assert torch.get_num_threads() == threads_before  # restored after embedding


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
    assert s.threads_per_task == 1 and s.workers == 2  # LocalCluster workers of one thread
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


def test_only_the_filtered_property_is_predicted_for_every_class(tmp_path: Path) -> None:
    """The screen predicted and embedded every class before filtering; now only what the filter
    needs is computed for every class, the rest for the kept ones."""
    cfg = config(ranges=(("fake_gap", 0.85, 0.95),))
    scorer = FakeScorer()
    s = screen(cfg, tmp_path / "o.parquet", scorer=scorer)
    assert 0 < s.kept < s.distinct
    assert scorer.rows == {"fake_gap": s.distinct, "fake_other": s.kept, "emb": 0}
    scorer = FakeScorer()
    e = screen(dataclasses.replace(cfg, embed=True), tmp_path / "e.parquet", scorer=scorer)
    assert scorer.rows == {"fake_gap": s.distinct, "fake_other": s.kept, "emb": s.kept}
    plain, embedded = pd.read_parquet(tmp_path / "o.parquet"), pd.read_parquet(tmp_path / "e.parquet")
    assert set(embedded.columns) - set(plain.columns) == {f"emb_{j}" for j in range(4)}
    pd.testing.assert_frame_equal(embedded[plain.columns], plain)
    assert e.kept == s.kept


def test_shipped_models_with_and_without_embed_agree(tmp_path: Path) -> None:
    """The real predictors and embedder: the same rows and columns with and without --embed, the
    predictions those of PropertyPredictor.predict, the embeddings those of Embedder.embed."""
    pytest.importorskip("torch")
    from defectspace.ml.embedder import Embedder
    from defectspace.predict import load_predictors

    cfg = config(n=1500, ranges=(("homo_lumo_gap", 0.2, 1.0),))
    s = screen(cfg, tmp_path / "o.parquet")
    screen(dataclasses.replace(cfg, embed=True), tmp_path / "e.parquet")
    plain, embedded = pd.read_parquet(tmp_path / "o.parquet"), pd.read_parquet(tmp_path / "e.parquet")
    assert 0 < s.kept < s.distinct and len(plain) == s.kept
    assert list(plain.columns[-4:]) == ["homo_lumo_gap", "formation_energy_per_site",
                                        "homo_lumo_gap_out_of_domain",
                                        "formation_energy_per_site_out_of_domain"]
    assert set(embedded.columns) - set(plain.columns) == {f"emb_{j}" for j in range(12)}
    pd.testing.assert_frame_equal(embedded[plain.columns], plain)
    from defectspace import parse_2dmd

    x = parse_2dmd(plain["defects"].tolist(), LAT)
    for name, model in load_predictors(None, LAT).items():
        np.testing.assert_allclose(plain[name], model.predict(x), rtol=1e-12, atol=0)
    emb = embedded[[f"emb_{j}" for j in range(12)]].to_numpy()
    np.testing.assert_allclose(emb, Embedder.load().embed(x), rtol=0, atol=1e-6)


def test_screen_flags_and_warns_once_about_classes_outside_the_training_domain(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The shipped formation-energy model learned from 2-3 defects: a screen of 5-vacancy classes
    flags each kept class it extrapolates to, as PropertyPredictor.out_of_domain does, and the
    command warns once per model, also when a restarted run reads finished partitions."""
    from defectspace import parse_2dmd
    from defectspace.cli import main
    from defectspace.predict import load_predictors

    out = tmp_path / "d.parquet"
    args = ["screen", "--random", "600", "--counts", "S->V=5", "--counts", "S->V=2,Mo->W=1",
            "-o", str(out), "--partitions", "2"]
    assert main(args) == 0
    err = capsys.readouterr().err
    df = pd.read_parquet(out)
    x = parse_2dmd(df["defects"].tolist(), LAT)
    for name, model in load_predictors(None, LAT).items():
        np.testing.assert_array_equal(df[f"{name}_out_of_domain"], model.out_of_domain(x, LAT))
    fe = df["formation_energy_per_site_out_of_domain"].to_numpy()
    assert fe.any() and not fe.all()
    assert fe[(x > 0).sum(axis=1) == 5].all()
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, err
    assert warnings[0].startswith(f"warning: {int(fe.sum())} of {len(df)} kept classes lie outside "
                                  "the training domain of formation_energy_per_site (trained on 2-3")
    cfg = config(compositions=((0, 0, 5, 0),), n=300, n_partitions=2)
    first = screen(cfg, tmp_path / "r.parquet", keep_work=True)
    again = screen(cfg, tmp_path / "r.parquet")  # every partition read back from the work folder
    assert first.domain_warnings == again.domain_warnings and len(first.domain_warnings) == 1


def test_model_scorer_shares_one_histogram_and_predicts_the_same_bits() -> None:
    from defectspace.pipeline.screening import default_scorer
    from defectspace.predict import load_predictors

    c = Canonicalizer(LAT)
    x = np.concatenate([c.sample({"S->V": 2, "Mo->W": 1}, 300, seed=0),
                        c.sample({"Mo->V": 7, "Mo->W": 7, "S->V": 22, "S->Se": 22}, 300, seed=1)])
    scorer = default_scorer(None, None, LAT, n_threads=1)
    got = scorer.predict(x, scorer.names)
    for name, model in load_predictors(None, LAT).items():
        np.testing.assert_array_equal(got[name], model.predict(x, n_threads=1))
        np.testing.assert_array_equal(scorer.predict(x, [name])[name], got[name])


@pytest.mark.parametrize("name, lo, hi", [("homo_lumo_gap", 0.8, 1.2), ("homo_lumo_gap", 0.3, 0.5),
                                          ("homo_lumo_gap", -1.0, 9.0), ("homo_lumo_gap", 5.0, 6.0),
                                          ("formation_energy_per_site", 0.2, 0.6)])
def test_select_by_a_prefix_of_the_trees_keeps_exactly_the_rows_in_range(name: str, lo: float,
                                                                         hi: float) -> None:
    """ModelScorer.select drops rows from bounds on the trees not walked yet: the rows kept and their
    values are those of predicting every row (all, none and some kept; a ridge model: no bound)."""
    from defectspace.pipeline.screening import _tree_bound, default_scorer

    c = Canonicalizer(LAT)
    x = np.concatenate([c.sample({"S->V": 2, "Mo->W": 1}, 200, seed=0),
                        c.sample({"Mo->V": 2, "Mo->W": 3, "S->V": 7, "S->Se": 7}, 400, seed=1),
                        c.sample({"Mo->V": 7, "Mo->W": 7, "S->V": 22, "S->Se": 22}, 400, seed=2)])
    scorer = default_scorer(None, None, LAT, n_threads=1)
    # the shipped gap model is an ensemble of gradient-boosted trees, formation energy a ridge model
    assert (_tree_bound(scorer.models[name]) is not None) == (name == "homo_lumo_gap")
    full = scorer.predict(x, [name])[name]
    keep, values = scorer.select(x, [(name, lo, hi)])
    np.testing.assert_array_equal(keep, (full >= lo) & (full <= hi))
    np.testing.assert_array_equal(values[name], full[keep])


def test_screen_with_and_without_tree_bounds_is_byte_identical(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from defectspace.pipeline import screening

    cfg = config(n=3000, compositions=((0, 1, 2, 0), (7, 7, 22, 22)), ranges=(("homo_lumo_gap", 0.8, 1.2),))
    s = screen(cfg, tmp_path / "bound.parquet")
    monkeypatch.setattr(screening.ModelScorer, "select", None)  # predict every class whole
    screen(cfg, tmp_path / "plain.parquet")
    assert 0 < s.kept < s.distinct
    assert (tmp_path / "bound.parquet").read_bytes() == (tmp_path / "plain.parquet").read_bytes()


def test_threads_of_this_process_give_the_same_output(tmp_path: Path) -> None:
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    one = screen(config(), a, scorer=fake_scorer, n_workers=1)
    three = screen(config(), b, scorer=fake_scorer, n_workers=3)
    assert (one.workers, three.workers) == (1, 3)
    assert a.read_bytes() == b.read_bytes()
    assert {"chunks", "partitions", "merge"} == set(three.phase_seconds)
    assert {"canonicalize", "read + dedupe", "decode", "predict"} <= set(three.stage_seconds)


def test_work_folder_and_output_may_be_fsspec_urls(tmp_path: Path) -> None:
    """A cluster without a shared disk keeps its work folder and output in an object store."""
    fsspec = pytest.importorskip("fsspec")
    local = tmp_path / "local.parquet"
    screen(config(), local, scorer=fake_scorer)
    expected = local.read_bytes()
    # a file:// output and work folder
    url = (tmp_path / "f.parquet").as_uri()
    screen(config(), url, scorer=fake_scorer, work_dir=(tmp_path / "w").as_uri(), keep_work=True)
    assert (tmp_path / "f.parquet").read_bytes() == expected
    assert len(list((tmp_path / "w" / "keys").glob("*.arrow"))) == 5
    # memory:// (an in-process object store): output, and the default work folder beside it
    mem = fsspec.filesystem("memory")
    root = f"ds-test-{os.getpid()}-{time.monotonic_ns()}"
    try:
        s = screen(config(), f"memory://{root}/m.parquet", scorer=fake_scorer, keep_work=True)
        assert mem.cat_file(f"/{root}/m.parquet") == expected
        assert mem.exists(f"/{root}/m.parquet.work/config.json") and s.kept == len(pd.read_parquet(local))
        assert not [p for p in mem.find(f"/{root}") if p.endswith(".tmp")]  # no temporary left
        # resumed from the memory work folder: nothing recomputed, same bytes
        scorer = FakeScorer()
        screen(config(), f"memory://{root}/m.parquet", scorer=scorer)
        assert scorer.rows["fake_gap"] == 0 and mem.cat_file(f"/{root}/m.parquet") == expected
        assert not mem.exists(f"/{root}/m.parquet.work")  # removed after success
        with pytest.raises(ValueError, match="Dask workers cannot reach it"):
            screen(config(), f"memory://{root}/d.parquet", scorer=fake_scorer, scheduler="tcp://127.0.0.1:1")
    finally:
        if mem.exists(f"/{root}"):
            mem.rm(f"/{root}", recursive=True)


def test_screen_command_without_embed_never_imports_torch(tmp_path: Path) -> None:
    out = tmp_path / "h.parquet"
    code = ("import sys\nfrom defectspace.cli import main\n"
            f"rc = main(['screen', '--random', '3000', '--counts', 'S->V=2,Mo->W=1', '--counts', "
            f"'Mo->V=7,Mo->W=7,S->V=22,S->Se=22', '--keep', 'homo_lumo_gap=0.8:1.2', '-o', {str(out)!r}])\n"
            "assert rc == 0 and 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    df = pd.read_parquet(out)
    assert 0 < len(df) and not [c for c in df.columns if c.startswith("emb_")]
    assert df["homo_lumo_gap"].between(0.8, 1.2).all()
    assert "wall per phase" in res.stderr and "canonicalize" in res.stderr


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_scheduler_and_workers_in_separate_processes_give_the_same_output(tmp_path: Path) -> None:
    """As on separate hosts: 'dask scheduler' and 'dask worker' started as their own processes,
    the shipped models loaded by the workers themselves, the work folder given as a file:// URL."""
    pytest.importorskip("distributed")
    from dask.distributed import Client

    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = [sys.executable, "-m", "dask"]
    procs = [subprocess.Popen([*dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        procs.append(subprocess.Popen([*dask, "worker", address, "--nworkers", "2", "--nthreads", "1",
                                       "--no-dashboard", "--local-directory", str(tmp_path / "dw")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
        cfg = config(n=2000, ranges=(("homo_lumo_gap", 0.2, 1.0),))
        local = tmp_path / "local.parquet"
        screen(cfg, local)
        remote = tmp_path / "remote.parquet"
        s = screen(cfg, remote.as_uri(), scheduler=address, work_dir=(tmp_path / "w").as_uri())
        assert s.workers == 2 and s.threads_per_task == 1 and s.worker_peak_rss_mib > 0
        assert len(s.worker_cpu_seconds) == 2 and min(s.worker_cpu_seconds) > 0
        assert remote.read_bytes() == local.read_bytes()
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "delete-checksum"])
@pytest.mark.parametrize("where", ["out/p00001.arrow", "keys/c000002.arrow"])
def test_damaged_work_file_is_found_and_computed_again(tmp_path: Path, damage: str, where: str) -> None:
    """A flipped byte in OUT.work/out/p001 gave an OSError traceback; truncated or deleted files
    gave messages without the file: each work file's sha256 is checked on resume and a damaged
    one is computed again, with the same bytes as a clean run."""
    clean = tmp_path / "clean.parquet"
    screen(config(), clean, scorer=fake_scorer)
    out = tmp_path / "out.parquet"
    screen(config(), out, scorer=fake_scorer, keep_work=True)
    path = tmp_path / "out.parquet.work" / where
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
    elif damage == "truncate":
        path.write_bytes(bytes(data[: len(data) // 3]))
    elif damage == "delete":
        path.unlink()
    else:
        Path(str(path) + ".sha256").unlink()  # as if killed between the file and its checksum
    out.unlink()
    s = screen(config(), out, scorer=fake_scorer, keep_work=True)
    assert out.read_bytes() == clean.read_bytes()
    why = {"flip": "corrupt (sha256", "truncate": "truncated", "delete": "deleted",
           "delete-checksum": "unfinished (no checksum)"}[damage]
    assert s.redone == (f"{path}: {why}",) or (s.redone[0].startswith(f"{path}: {why}")
                                               and len(s.redone) == 1)


def test_work_file_damaged_after_its_check_is_one_line_naming_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Read errors name the file and the remedy instead of pyarrow's OSError."""
    import defectspace.pipeline.screening as S

    out = tmp_path / "out.parquet"
    screen(config(), out, scorer=fake_scorer, keep_work=True)
    work = tmp_path / "out.parquet.work"
    (work / "out" / "p00001.arrow").write_bytes(b"\x00" * 100)
    monkeypatch.setattr(S.Folder, "ready", lambda self, name, redone=None: True)  # checked earlier
    with pytest.raises(ValueError, match=r"work file .*p00001\.arrow cannot be read .*rerun the same "
                                         r"command"):
        screen(config(), out, scorer=fake_scorer, keep_work=True)
    (work / "config.json").write_bytes(b"{not json")
    monkeypatch.undo()
    with pytest.raises(ValueError, match=r"config\.json is truncated or grown .*remove "
                                         r".*out\.parquet\.work and rerun"):
        screen(config(), out, scorer=fake_scorer, keep_work=True)


def test_reported_wall_time_covers_reading_the_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """screen --input reported 23 s for a 54 s run: the input was read before the clock started."""
    import defectspace.io
    from defectspace.cli import main

    src = tmp_path / "in.csv"
    src.write_text("id,defects\na,vac:17:S->V\nb,sub:6:Mo->W\n")
    read = defectspace.io.read_placements

    def slow_read(*args: Any, **kwargs: Any) -> Any:
        time.sleep(3.0)
        return read(*args, **kwargs)

    monkeypatch.setattr(defectspace.io, "read_placements", slow_read)
    t0 = time.perf_counter()
    assert main(["screen", "--input", str(src), "-o", str(tmp_path / "h.parquet")]) == 0
    elapsed = time.perf_counter() - t0
    err = capsys.readouterr().err
    wall = float(err.split("wall ")[1].split(" s")[0])
    assert 3.0 <= wall <= elapsed + 0.05, err
    assert "read input + models" in err
