"""The folded equivariant encoder (lookup first layer, channels-last group convolutions) gives the
embeddings of the plain one to float rounding, on any supercell, whatever the batch."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from defectspace import Lattice  # noqa: E402
from defectspace.ml.embedder import Embedder  # noqa: E402
from defectspace.ml.encoder import Encoder, EncoderConfig  # noqa: E402
from defectspace.placement import random_placements  # noqa: E402

LAT = Lattice.preset("MoS2", (8, 8))


def reference(emb: Embedder, x: np.ndarray, lattice: Lattice = LAT) -> np.ndarray:
    """The plain encoder on the one-hot grid (what Embedder.embed ran before folding)."""
    with torch.inference_mode():
        return np.concatenate([emb.embed_tensor(torch.from_numpy(x[i:i + 4096]), lattice.supercell).numpy()
                               for i in range(0, len(x), 4096)])


def mixed(lattice: Lattice, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    top = lattice.n_sites // 3
    dense = max(1, int(0.3 * lattice.n_sites))
    return np.concatenate([random_placements(lattice, n // 3, (1, min(3, top)), rng),
                           random_placements(lattice, n // 3, (min(4, top), min(24, top)), rng),
                           random_placements(lattice, n - 2 * (n // 3), (max(1, dense - 3), dense), rng)])


def test_shipped_embedder_unchanged_on_10k_placements() -> None:
    emb = Embedder.load()
    x = mixed(LAT, 10_000, 0)
    assert emb.folded(LAT.supercell) is not None
    got, ref = emb.embed(x), reference(emb, x)
    assert np.abs(got - ref).max() < 1e-5
    assert np.abs(got - ref).mean() < 1e-6


@pytest.mark.parametrize("supercell", [(4, 4), (3, 5), (2, 2), (1, 3), (1, 1)])
def test_any_supercell_to_float_rounding(supercell: tuple[int, int]) -> None:
    """Wrap-around where the kernels reach past the supercell (the first layer's 5x5 on 1 to 4 cells)."""
    emb = Embedder.load()
    lat = LAT.with_supercell(supercell)
    x = mixed(lat, 300, 1)
    np.testing.assert_allclose(emb.embed(x, lattice=lat), reference(emb, x, lat), rtol=0, atol=1e-5)
    assert emb.folded(supercell) is not None


@pytest.mark.parametrize(("channels", "layers", "normalize"), [(12, 1, True), (12, 2, True), (36, 4, False)])
def test_untrained_shapes_to_float_rounding(channels: int, layers: int, normalize: bool) -> None:
    cfg = EncoderConfig(architecture="equivariant", channels=channels, layers=layers, hidden=16,
                        normalize=normalize)
    emb = Embedder(Encoder(cfg, LAT), LAT)
    x = mixed(LAT, 600, 2)
    np.testing.assert_allclose(emb.embed(x), reference(emb, x), rtol=0, atol=1e-5)


def test_a_rows_embedding_does_not_depend_on_its_batch_or_threads() -> None:
    emb = Embedder.load()
    x = mixed(LAT, 1100, 3)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        whole = emb.embed(x)
        torch.set_num_threads(2)
        np.testing.assert_array_equal(emb.embed(x), whole)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(old)
    for size in (1, 7, 9, 513):
        np.testing.assert_array_equal(emb.embed(x[:size]), whole[:size])
    np.testing.assert_array_equal(emb.embed(x[5:6]), whole[5:6])


def test_folded_copy_follows_weight_changes() -> None:
    torch.manual_seed(0)
    emb = Embedder(Encoder(EncoderConfig(architecture="equivariant", channels=12, layers=2, hidden=16), LAT),
                   LAT)
    x = mixed(LAT, 60, 4)
    first = emb.embed(x)
    with torch.no_grad():
        for p in emb.encoder.parameters():
            p.mul_(1.5)  # in place, as an optimizer step
    second = emb.embed(x)
    assert np.abs(second - first).max() > 1e-3
    np.testing.assert_allclose(second, reference(emb, x), rtol=0, atol=1e-5)


def test_the_plain_cnn_is_not_folded() -> None:
    emb = Embedder(Encoder(EncoderConfig(architecture="cnn", channels=8, layers=2, hidden=8)), LAT)
    assert emb.folded(LAT.supercell) is None
    x = mixed(LAT, 20, 5)
    np.testing.assert_array_equal(emb.embed(x), reference(emb, x))
