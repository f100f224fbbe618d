"""Figures of embeddings: the Figure-1-like picture of equivalence classes in embedding space.

Uses matplotlib's Agg canvas directly (no GUI backend is selected or needed).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from defectspace.placement import random_placements

if TYPE_CHECKING:
    from defectspace.ml.embedder import Embedder


def project_2d(emb: NDArray[np.floating], method: str = "umap", seed: int = 0) -> NDArray[np.float64]:
    """``(n, 2)`` projection of embeddings by UMAP or PCA.

    UMAP is fitted on the distinct rows (equal to 1e-4) and every row takes its distinct row's
    position: exact duplicates, such as the symmetry images of one placement under an invariant
    embedder, would otherwise fill each other's neighbour lists and split into separate islands.
    """
    x = np.asarray(emb, dtype=np.float64)
    if method == "umap":
        _, first, inverse = np.unique(np.round(x, 4), axis=0, return_index=True, return_inverse=True)
        if first.size < x.shape[0]:
            return project_2d(x[first], method, seed)[inverse.reshape(-1)]
    if method == "pca":
        centred = x - x.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        out: NDArray[np.float64] = centred @ vt[:2].T
        return out
    if method == "umap":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numba / n_jobs notices from umap-learn
            import umap

            reducer = umap.UMAP(n_components=2, n_neighbors=min(15, x.shape[0] - 1), min_dist=0.1,
                                random_state=seed)
            return np.asarray(reducer.fit_transform(x), dtype=np.float64)
    raise ValueError(f"unknown projection {method!r}; use 'umap' or 'pca'")


def class_samples(embedder: Embedder, n_defects: int, n_classes: int, n_images: int, seed: int
                  ) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """``n_images`` random symmetry images of each of ``n_classes`` distinct classes with
    ``n_defects`` defects (kinds uniform per site): (placements, class label per row)."""
    c = embedder.canonicalizer()
    rng = np.random.default_rng(seed)
    pool = random_placements(embedder.lattice, 8 * n_classes + 8, (n_defects, n_defects), rng)
    distinct = c.dedupe(pool).canonical[:n_classes]
    base = np.repeat(distinct, n_images, axis=0)
    images = c.random_images(base, int(rng.integers(0, 2**62))).images
    labels = np.repeat(np.arange(distinct.shape[0]), n_images)
    return images, labels


def plot_embeddings(
    embedder: Embedder,
    path: str | Path,
    defect_counts: Sequence[int] = (2, 3, 6, 12),
    n_classes: int = 12,
    n_images: int = 40,
    method: str = "umap",
    exact: bool = False,
    seed: int = 0,
    n_background: int = 1000,
) -> Path:
    """One panel per defect count: 2D projection of the embeddings of ``n_images`` symmetry
    images of ``n_classes`` classes, each class in its own colour, over ``n_background`` other
    random placements with as many defects (grey). Writes a PNG and returns its path.

    A well-trained embedder draws every class as one tight dot, classes apart.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure


    if n_classes < 1 or n_images < 1:
        raise ValueError("n_classes and n_images must be positive")
    counts = list(defect_counts)
    fig = Figure(figsize=(3.6 * len(counts), 3.8), dpi=120)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(counts), squeeze=False)[0]
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    for ax, k in zip(axes, counts, strict=True):
        x, labels = class_samples(embedder, k, n_classes, n_images, seed + k)
        rng = np.random.default_rng(seed + 1000 + k)
        back = random_placements(embedder.lattice, n_background, (k, k), rng)
        emb = embedder.embed(np.concatenate([x, back]), exact=exact)
        xy = project_2d(emb, method, seed)
        ax.scatter(xy[len(x):, 0], xy[len(x):, 1], s=3, color="0.8", linewidths=0)
        for cls in np.unique(labels):
            sel = np.flatnonzero(labels == cls)
            ax.scatter(xy[sel, 0], xy[sel, 1], s=14, color=cmap(int(cls) % 20), alpha=0.5,
                       linewidths=0)
        ax.set_title(f"{k} defect{'s' if k != 1 else ''}: {int(labels.max()) + 1} classes")
        ax.set_xticks([])
        ax.set_yticks([])
    mode = "canonical forms" if exact else "learned"
    fig.suptitle(f"{embedder.lattice.name} {embedder.lattice.supercell[0]}x"
                 f"{embedder.lattice.supercell[1]}: {method.upper()} of {embedder.dim}-d embeddings "
                 f"({mode}); one colour per equivalence class, {n_images} images each; grey: "
                 f"{n_background} random placements", fontsize=9)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out
