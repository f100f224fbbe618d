from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from defectspace import Canonicalizer, Lattice, format_2dmd  # noqa: E402
from defectspace.ml.embedder import (  # noqa: E402
    DEFAULT_MODEL_DIR,
    META_FILE,
    WEIGHTS_FILE,
    Embedder,
    save_checkpoint,
)
from defectspace.ml.encoder import (  # noqa: E402
    AnchorPointGroup,
    Encoder,
    EncoderConfig,
    channel_table,
    states_to_grid,
)
from defectspace.ml.evaluation import best_threshold, held_out_metrics, roc_auc  # noqa: E402
from defectspace.ml.training import (  # noqa: E402
    PairStream,
    TrainConfig,
    finetune_with_property,
    train,
)
from defectspace.placement import random_placements  # noqa: E402
from helpers import assert_invariant  # noqa: E402

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="CUDA is not available"))]

LAT = Lattice.preset("MoS2", (8, 8))


@pytest.fixture(scope="module")
def canon() -> Canonicalizer:
    return Canonicalizer(LAT)


def placements(n: int, defects: tuple[int, int], seed: int) -> np.ndarray:
    return random_placements(LAT, n, defects, np.random.default_rng(seed))


def tiny_embedder(device: str = "cpu") -> Embedder:
    enc = Encoder(EncoderConfig(channels=8, layers=2, hidden=16, dim=12, architecture="cnn"))
    return Embedder(enc, LAT, device)


# --------------------------------------------------------------------------- shipped model
@pytest.mark.parametrize("device", DEVICES)
def test_shipped_model_symmetry_images_agree(device: str, canon: Canonicalizer) -> None:
    emb = Embedder.load(device=device)
    assert emb.lattice.same_as(LAT) and emb.dim == 12
    x = np.concatenate([placements(300, (2, 3), 1), placements(300, (4, 24), 2)])
    # the shipped encoder is point-group equivariant: images agree to float rounding, and every
    # verified-inequivalent partner (half of them one defect moved nearby) lies far beyond that
    assert emb.encoder.config.architecture == "equivariant"
    assert_invariant(emb.embed, x, canon, seed=7, atol=1e-4)
    neg = canon.negatives(x, seed=8)
    e, e_neg = emb.embed(x), emb.embed(neg.negatives)
    assert e.dtype == np.float32 and e.shape == (600, 12)
    d_neg = np.linalg.norm(e - e_neg, axis=1)[neg.kind >= 0]
    assert d_neg.min() > 1e-3
    assert np.median(d_neg) > 0.1


@pytest.mark.parametrize("device", DEVICES)
def test_exact_mode_is_invariant_to_float_precision(device: str, canon: Canonicalizer) -> None:
    emb = Embedder.load(device=device)
    x = np.concatenate([placements(100, (1, 3), 3), placements(100, (4, 24), 4)])
    assert_invariant(lambda s: emb.embed(s, exact=True), x, canon, seed=9, atol=1e-5)


def test_translations_are_exact_for_learned_mode() -> None:
    emb = tiny_embedder()
    c = Canonicalizer(LAT, "translations")
    assert_invariant(emb.embed, placements(64, (1, 10), 5), c, seed=3, atol=1e-5)


def test_point_group_fixing_the_metal_site() -> None:
    g = AnchorPointGroup.of(LAT)
    assert g.order == 12  # D3h
    assert np.array_equal(g.rotations[0], np.eye(3))
    n = g.order
    assert all(sorted(row) == list(range(n)) for row in g.mul.tolist())  # a Latin square
    assert np.array_equal(g.mul[np.arange(n), g.inv], np.zeros(n, dtype=np.int64))
    for a in range(n):  # associativity
        for b in range(n):
            assert np.array_equal(g.mul[g.mul[a, b]], g.mul[a][g.mul[b]])


@pytest.mark.parametrize("size", [(8, 8), (6, 6), (3, 3), (1, 1)])
def test_equivariant_encoder_is_invariant_by_construction(size: tuple[int, int]) -> None:
    lat = LAT.with_supercell(size)
    enc = Encoder(EncoderConfig(architecture="equivariant", channels=24, layers=3, hidden=16), lat)
    emb = Embedder(enc, lat)  # untrained: the invariance is the architecture's
    hi = max(1, min(24, lat.n_sites // 4))
    x = np.concatenate([random_placements(lat, 100, (1, min(3, hi)), np.random.default_rng(1)),
                        random_placements(lat, 100, (1, hi), np.random.default_rng(2))])
    assert_invariant(emb.embed, x, Canonicalizer(lat), seed=4, atol=2e-6)
    a = emb.embed(x)
    # ... and not constant: different placements differ by much more than rounding
    assert np.median(np.linalg.norm(a[:100] - a[100:], axis=1)) > 1e-3


def test_equivariant_channels_must_fill_the_orientations() -> None:
    with pytest.raises(ValueError, match="multiple of the 12 point operations"):
        Encoder(EncoderConfig(architecture="equivariant", channels=20), LAT)
    with pytest.raises(ValueError, match="needs its lattice"):
        Encoder(EncoderConfig())


def test_any_supercell_of_the_lattice() -> None:
    emb = tiny_embedder()
    for size in [(6, 6), (8, 4), (3, 5)]:
        lat = LAT.with_supercell(size)
        x = random_placements(lat, 5, (1, 4), np.random.default_rng(0))
        out = emb.embed(x, lattice=lat)
        assert out.shape == (5, 12) and np.isfinite(out).all()
        exact = emb.embed(x, exact=True, lattice=lat)
        assert exact.shape == (5, 12)
    with pytest.raises(ValueError, match="trained for"):
        emb.embed(np.zeros((1, 192), np.uint8), lattice=Lattice.preset("WSe2", (8, 8)))


def test_grid_channels() -> None:
    table = channel_table(LAT)
    assert table.tolist() == [[-1, 0, 1, -1, -1], [-1, -1, -1, 2, 3], [-1, -1, -1, 4, 5]]
    x = np.zeros((1, 192), np.uint8)
    x[0, 3 * (8 * 2 + 5) + 2] = 4  # top S of cell (2, 5) -> Se
    x[0, 3 * (8 * 7 + 0) + 0] = 1  # Mo of cell (7, 0) -> vacancy
    g = states_to_grid(torch.from_numpy(x), torch.as_tensor(table), (8, 8))
    assert g.shape == (1, 6, 8, 8) and float(g.sum()) == 2.0
    assert g[0, 5, 2, 5] == 1 and g[0, 0, 7, 0] == 1


# --------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip(tmp_path: Path) -> None:
    emb = tiny_embedder()
    save_checkpoint(tmp_path, emb.encoder, LAT, {"seed": 3}, {"note": 1.0})
    back = Embedder.load(tmp_path, lattice=LAT)
    x = placements(50, (1, 12), 6)
    np.testing.assert_array_equal(emb.embed(x), back.embed(x))
    assert back.metadata["training"] == {"seed": 3}
    assert Embedder.load(tmp_path / META_FILE).dim == 12
    again = back.save(tmp_path / "again")
    np.testing.assert_array_equal(Embedder.load(again).embed(x), emb.embed(x))


def test_corrupt_weights_are_refused(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, tiny_embedder().encoder, LAT)
    w = tmp_path / WEIGHTS_FILE
    raw = bytearray(w.read_bytes())
    raw[-5] ^= 0xFF
    w.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="corrupt"):
        Embedder.load(tmp_path)
    w.unlink()
    with pytest.raises(ValueError, match="missing"):
        Embedder.load(tmp_path)


def test_wrong_version_and_garbage_are_refused(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, tiny_embedder().encoder, LAT)
    meta_path = tmp_path / META_FILE
    meta = json.loads(meta_path.read_text())
    meta["format_version"] = 99
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="format version 99"):
        Embedder.load(tmp_path)
    meta_path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        Embedder.load(tmp_path)
    with pytest.raises(ValueError, match="no embedder checkpoint"):
        Embedder.load(tmp_path / "nowhere")


def test_wrong_lattice_is_refused(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, tiny_embedder().encoder, LAT)
    with pytest.raises(ValueError, match="trained for"):
        Embedder.load(tmp_path, lattice=Lattice.preset("WSe2", (8, 8)))
    with pytest.raises(ValueError, match="trained for"):
        Embedder.load(tmp_path, lattice=LAT.with_supercell((6, 6)))


# --------------------------------------------------------------------------- training
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("loss", "architecture"),
                         [("margin", "equivariant"), ("infonce", "equivariant"), ("margin", "cnn")])
def test_training_is_seeded_and_reproducible(device: str, loss: str, architecture: str) -> None:
    cfg = TrainConfig(steps=4, batch_size=16, channels=12, hidden=16, loss=loss, eval_pairs=64,
                      architecture=architecture)
    r1 = train(cfg, LAT, device=device, progress=False)
    r2 = train(cfg, LAT, device=device, progress=False)
    assert len(r1.losses) == 4 and all(np.isfinite(r1.losses))
    x = placements(20, (1, 8), 0)
    np.testing.assert_allclose(r1.embedder.embed(x), r2.embedder.embed(x), atol=1e-6)
    assert {"train_seconds", "final_loss"} <= set(r1.metrics)
    assert set(held_out_metrics(r1.embedder, cfg)) == {"low", "high"}
    assert r1.embedder.device.type == device
    assert r1.embedder.encoder.config.architecture == architecture


def test_finetune_with_property_learns_and_stays_invariant(canon: Canonicalizer) -> None:
    enc = Encoder(EncoderConfig(architecture="equivariant", channels=12, layers=2, hidden=16), LAT)
    emb = Embedder(enc, LAT)
    x = placements(300, (1, 8), 11)
    mo = LAT.site_types == 0
    y = (x[:, mo] > 0).sum(1) - 0.5 * (x[:, ~mo] > 0).sum(1)  # an invariant "property"
    before = emb.embed(x)

    def r2(e: np.ndarray) -> float:
        a = np.c_[e, np.ones(len(e))]
        resid = y - a @ np.linalg.lstsq(a, y, rcond=None)[0]
        return 1 - float(resid.var() / y.var())

    tuned = finetune_with_property(emb, x, y.astype(float), steps=60, batch_size=32, lr=3e-3)
    np.testing.assert_array_equal(emb.embed(x), before)  # the original is untouched
    assert tuned.metadata["training"]["finetune_with_property"]["labelled_rows"] == 300
    assert_invariant(tuned.embed, x, canon, seed=2, atol=2e-6)
    # an untrained embedding barely varies, so its r2 moves with float rounding (0.07 to 0.09)
    assert r2(before) < 0.15 and r2(tuned.embed(x)) > 0.45  # ~0.49 after tuning
    with pytest.raises(ValueError, match="finite"):
        finetune_with_property(emb, x[:3], np.array([1.0, np.nan, 2.0]))


def test_encoder_and_training_defaults_agree() -> None:
    """An EncoderConfig() is the encoder a TrainConfig() trains (both equivariant)."""
    assert EncoderConfig().architecture == TrainConfig().architecture == "equivariant"
    assert TrainConfig().encoder_config(LAT) == EncoderConfig()


def test_finetune_with_property_refuses_what_it_would_have_cast() -> None:
    emb = tiny_embedder()
    x = placements(10, (1, 4), 3)
    y = np.arange(10.0)
    with pytest.raises(ValueError, match="integer dtype"):
        finetune_with_property(emb, x + 0.5, y, steps=1)
    bad = x.astype(np.int64)
    bad[4, 7] = 260
    with pytest.raises(ValueError, match="row 4, site 7 has code 260"):
        finetune_with_property(emb, bad, y, steps=1)
    with pytest.raises(ValueError, match="192 sites"):
        finetune_with_property(emb, x[:, :100], y, steps=1)


def test_pair_stream_is_deterministic_and_verified(canon: Canonicalizer) -> None:
    s = PairStream(canon, TrainConfig(batch_size=64, seed=5))
    a, b = s.batch(3), s.batch(3)
    np.testing.assert_array_equal(a.anchors, b.anchors)
    assert canon.equivalent(a.anchors, a.positives).all()
    ok = a.neg_valid
    assert not canon.equivalent(a.anchors[ok], a.negatives[ok]).any()
    assert (a.anchor_class[ok] != a.negative_class[ok]).all()
    assert not np.array_equal(s.batch(4).anchors, a.anchors)


def test_metrics_helpers() -> None:
    assert roc_auc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0
    assert roc_auc(np.array([1.0]), np.array([1.0])) == 0.5
    thr = best_threshold(np.array([0.1, 0.2]), np.array([0.5, 0.9]))
    assert 0.2 < thr < 0.5
    # equivalents at rounding, negatives over decades: the log-scale midpoint (3.2e-4 here), not
    # half the smallest negative (0.035), which a fresh negative at 0.008 would fall below
    thr = best_threshold(np.array([0.0, 1e-6]), np.array([0.1, 0.07, 0.5]))
    assert 1e-6 < thr < 1e-3
    assert best_threshold(np.array([0.0, 0.0]), np.array([0.07, 0.5])) < 0.008


# --------------------------------------------------------------------------- command line
def test_cli_embed_and_plot(tmp_path: Path) -> None:
    from defectspace.cli import main

    x = placements(6, (1, 5), 11)
    src = tmp_path / "in.csv"
    pd.DataFrame({"id": [f"r{i}" for i in range(6)], "defects": format_2dmd(x, LAT),
                  "note": list("abcdef")}).to_csv(src, index=False)
    out = tmp_path / "out.csv"
    assert main(["embed", str(src), "-o", str(out)]) == 0
    df = pd.read_csv(out)
    assert list(df.columns) == ["id", "note", *[f"emb_{k}" for k in range(12)]]
    np.testing.assert_allclose(df[[f"emb_{k}" for k in range(12)]].to_numpy(), Embedder.load().embed(x),
                               atol=1e-6)
    assert main(["embed", str(src), "-o", str(out), "--exact", "--supercell", "8x8"]) == 0
    fig = tmp_path / "fig.png"
    assert main(["plot-embeddings", "-o", str(fig), "--method", "pca", "--defects", "2,5",
                 "--classes", "4", "--images", "5"]) == 0
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["embed", str(src), "-o", str(out), "--model", str(tmp_path / "none")]) == 2


def test_cli_train_embedder(tmp_path: Path) -> None:
    from defectspace.cli import main

    out = tmp_path / "model"
    assert main(["train-embedder", "--out", str(out), "--seed", "1", "--steps", "2", "--batch-size", "8",
                 "--channels", "12", "--eval-pairs", "40", "--no-progress", "--device", "cpu",
                 "--pairs-only"]) == 0
    emb = Embedder.load(out)
    meta = json.loads((out / META_FILE).read_text())
    assert meta["training"]["seed"] == 1 and meta["training"]["steps"] == 2
    assert emb.encoder.config.channels == 12 and emb.encoder.config.architecture == "equivariant"
    # 8 channels cannot hold the 12 orientations: a clear error, exit status 2
    assert main(["train-embedder", "--out", str(tmp_path / "bad"), "--steps", "2", "--channels", "8",
                 "--no-progress", "--pairs-only"]) == 2


TINY_TRAINING = ["--steps", "2", "--batch-size", "8", "--channels", "12", "--eval-pairs", "40",
                 "--no-progress", "--device", "cpu"]


def test_train_embedder_without_its_data_stops_unless_pairs_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Installed from a wheel it looked for <venv>/lib/shared/... and trained silently without
    the 2DMD placements, recording data: ""."""
    from defectspace.cli import main

    monkeypatch.setenv("DEFECTSPACE_2DMD", str(tmp_path / "nowhere"))
    out = tmp_path / "model"
    assert main(["train-embedder", "--out", str(out), *TINY_TRAINING]) == 2
    err = capsys.readouterr().err
    assert "2DMD data not found" in err and "DEFECTSPACE_2DMD" in err and "--pairs-only" in err
    assert not out.exists()
    assert main(["train-embedder", "--out", str(out), "--pairs-only", *TINY_TRAINING]) == 0
    assert json.loads((out / META_FILE).read_text())["training"]["data"] is None


def test_train_embedder_records_a_portable_description_of_its_data(
        tmp_path: Path, data_2dmd: Path) -> None:
    import hashlib

    from defectspace.cli import main

    out = tmp_path / "model"
    assert main(["train-embedder", "--out", str(out), *TINY_TRAINING]) == 0
    text = (out / META_FILE).read_text()
    training = json.loads(text)["training"]
    table = data_2dmd / "mos2_8x8.csv"
    assert training["data"] == {"file": "mos2_8x8.csv", "sha256": hashlib.sha256(
        table.read_bytes()).hexdigest(), "rows": 6433}
    assert str(data_2dmd) not in text  # no folder of this machine
    env = training["environment"]
    assert env["torch"] == torch.__version__ and env["threads"] == 1
    assert env["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()


def test_shipped_embedder_records_no_path_of_the_machine_that_trained_it() -> None:
    training = json.loads((DEFAULT_MODEL_DIR / META_FILE).read_text())["training"]
    assert set(training["data"]) == {"file", "sha256", "rows"}
    assert training["data"]["file"] == "mos2_8x8.csv"


def test_default_model_is_small() -> None:
    size = sum(p.stat().st_size for p in DEFAULT_MODEL_DIR.iterdir())
    assert size < 1_000_000


def test_train_with_properties_learns_every_head_and_stays_invariant(canon: Canonicalizer) -> None:
    """Contrastive loss plus linear property heads (the property-aware embedder's recipe): each
    property becomes linearly readable from the 12 numbers, invariance holds by construction,
    and what the heads saw is recorded."""
    from defectspace.ml.training import PropertyLabels, train_with_properties

    enc = Encoder(EncoderConfig(architecture="equivariant", channels=12, layers=2, hidden=16), LAT)
    emb = Embedder(enc, LAT)
    x = placements(300, (1, 8), 11)
    mo = LAT.site_types == 0
    a = ((x[:, mo] > 0).sum(1) - 0.5 * (x[:, ~mo] > 0).sum(1)).astype(float)
    b = (x == LAT.kind("S", "V").code).sum(1).astype(float) ** 2

    def r2(e: np.ndarray, y: np.ndarray) -> float:
        m = np.c_[e, np.ones(len(e))]
        resid = y - m @ np.linalg.lstsq(m, y, rcond=None)[0]
        return 1 - float(resid.var() / y.var())

    before = emb.embed(x)
    tuned = train_with_properties(emb, {"a": PropertyLabels(x, a), "b": PropertyLabels(x[:200], b[:200], 0.5)},
                                  steps=100, batch_size=32, lr=3e-3)
    np.testing.assert_array_equal(emb.embed(x), before)  # the original is untouched
    after = tuned.embed(x)
    assert r2(before, a) < 0.15 and r2(after, a) > r2(before, a) + 0.25  # 0.09 -> ~0.4
    assert r2(after, b) > r2(before, b) + 0.2
    assert_invariant(tuned.embed, x, canon, seed=3, atol=2e-6)
    heads = tuned.metadata["training"]["train_with_properties"]["heads"]
    assert heads["a"]["rows"] == 300 and heads["b"]["rows"] == 200 and heads["b"]["weight"] == 0.5
    with pytest.raises(ValueError, match="at least one property"):
        train_with_properties(emb, {})
    with pytest.raises(ValueError, match="one finite label per placement"):
        train_with_properties(emb, {"a": PropertyLabels(x[:3], np.array([1.0, np.nan, 2.0]))})
