"""Engine labels vs 2DMD's DFT (VASP, PBE) on the MoS2 8x8 rows that have both.

Reads the committed label files in python/defectspace/data/labels/ (whatever rows they hold so
far) and ../shared/data/2dmd/mos2_8x8.csv, and reports for each engine

* formation energy per site (2DMD's 148 rows with DFT energies): MAE and Pearson r as labelled
  (engine chemical potentials, see the JSON sidecars), and MAE after refitting one constant per
  element (the chemical potentials; 4 parameters, least squares on the total formation energy),
  which removes the difference between the engine's references and 2DMD's;
* HOMO-LUMO gap (xTB; low-density rows with a DFT gap): MAE and Pearson r;
* wall seconds per structure (1 thread) by density.

Writes benchmarks/results/engine_vs_dft.json and a parity plot engine_vs_dft.png.

    python benchmarks/engine_vs_dft.py [--shared ../shared/data/2dmd] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from defectspace.datasets import find_2dmd

REPO = Path(__file__).resolve().parents[1]
LABELS = REPO / "python" / "defectspace" / "data" / "labels"
ELEMENTS = ("Mo", "S", "W", "Se")


def _read_labels(path: Path) -> pd.DataFrame:
    """Rows with status ok of a label file (a half-written last line is ignored)."""
    text = path.read_text(encoding="utf-8")
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    from io import StringIO

    df = pd.read_csv(StringIO(text), dtype={"id": str, "error": str})
    return df[df.status == "ok"].copy()


def _composition_change(defects: str) -> np.ndarray:
    """Coefficients of the chemical potentials (over ``ELEMENTS``) in a total formation energy.

    The formation energy is linear in the chemical potentials: +1 per removed host atom, -1 per
    added dopant atom.
    """
    c = dict.fromkeys(ELEMENTS, 0.0)
    for item in defects.split(";"):
        _kind, _site, change = item.split(":")
        host, to = change.split("->")
        c[host] += 1.0
        if to != "V":
            c[to] -= 1.0
    return np.array([c[e] for e in ELEMENTS])


def _stats(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    return {
        "n": len(ref),
        "mae": float(np.mean(np.abs(pred - ref))),
        "pearson_r": float(np.corrcoef(pred, ref)[0, 1]) if len(ref) > 2 else float("nan"),
        "mean_signed_error": float(np.mean(pred - ref)),
    }


def formation_energy_report(
    labels: pd.DataFrame, dft: pd.DataFrame
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Formation energy per site vs DFT: as labelled and after a chemical-potential refit."""
    m = labels.merge(dft, on="id", suffixes=("", "_dft"))
    m = m[m.formation_energy_per_site_dft.notna() & m.formation_energy_per_site.notna()]
    if m.empty:
        return {"n": 0}, m
    out: dict[str, Any] = {
        "as_labelled": _stats(
            m.formation_energy_per_site.to_numpy(), m.formation_energy_per_site_dft.to_numpy()
        )
    }
    coef = np.stack([_composition_change(d) for d in m.defects])
    n_def = m.n_defects.to_numpy(dtype=float)
    resid = (m.formation_energy_per_site_dft - m.formation_energy_per_site).to_numpy() * n_def
    delta, *_ = np.linalg.lstsq(coef, resid, rcond=None)
    fitted = m.formation_energy_per_site.to_numpy() + coef @ delta / n_def
    out["mu_refit"] = _stats(fitted, m.formation_energy_per_site_dft.to_numpy())
    out["mu_refit"]["delta_mu"] = {e: float(d) for e, d in zip(ELEMENTS, delta, strict=True)}
    m = m.assign(formation_energy_per_site_refit=fitted)
    out["by_type_mae_as_labelled"] = {
        t: float(g.formation_energy_per_site.sub(g.formation_energy_per_site_dft).abs().mean())
        for t, g in m.groupby("description")
    }
    return out, m


def gap_report(labels: pd.DataFrame, dft: pd.DataFrame) -> tuple[dict[str, Any], pd.DataFrame]:
    m = labels.merge(dft, on="id", suffixes=("", "_dft"))
    m = m[m.homo_lumo_gap_dft.notna() & m.homo_lumo_gap.notna()]
    if m.empty:
        return {"n": 0}, m
    return _stats(m.homo_lumo_gap.to_numpy(), m.homo_lumo_gap_dft.to_numpy()), m


def timing_report(labels: pd.DataFrame, dft: pd.DataFrame) -> dict[str, Any]:
    m = labels.merge(dft[["id", "density"]], on="id")
    return {
        d: {"n": len(g), "median_s": float(g.seconds.median()), "mean_s": float(g.seconds.mean())}
        for d, g in m.groupby("density")
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", default=None,
                    help="2DMD folder (default: the package's data locator, $DEFECTSPACE_2DMD)")
    ap.add_argument("--labels", default=str(LABELS))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = ap.parse_args()
    table = find_2dmd() if args.shared is None else Path(args.shared) / "mos2_8x8.csv"
    dft = pd.read_csv(table, dtype={"id": str})
    labels_dir, out_dir = Path(args.labels), Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    report: dict[str, Any] = {}
    fe_frames: dict[str, pd.DataFrame] = {}
    gap_frames: dict[str, pd.DataFrame] = {}
    for path in sorted(labels_dir.glob("*.csv")):
        engine = path.stem
        labels = _read_labels(path)
        meta_path = path.with_suffix(".json")
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        entry: dict[str, Any] = {
            "engine": meta.get("engine_version", engine),
            "rows_ok": len(labels),
            "seconds_per_structure": timing_report(labels, dft),
        }
        if "formation_energy_per_site" in labels:
            entry["formation_energy_per_site"], fe_frames[engine] = formation_energy_report(
                labels, dft
            )
        if "homo_lumo_gap" in labels:
            entry["homo_lumo_gap"], gap_frames[engine] = gap_report(labels, dft)
        report[engine] = entry
    (out_dir / "engine_vs_dft.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.8), dpi=90)
    ax = axes[0]
    for engine, m in fe_frames.items():
        if not m.empty:
            fe = report[engine]["formation_energy_per_site"]
            ax.scatter(
                m.formation_energy_per_site_dft,
                m.formation_energy_per_site,
                s=8,
                label=f"{engine} (MAE {fe['as_labelled']['mae']:.2f})",
            )
            ax.scatter(
                m.formation_energy_per_site_dft,
                m.formation_energy_per_site_refit,
                s=8,
                marker="x",
                label=f"{engine}, mu refit (MAE {fe['mu_refit']['mae']:.3f})",
            )
    ax.set(
        xlabel="DFT formation energy per site (eV)",
        ylabel="engine (eV)",
        title="formation energy / site",
    )
    ax = axes[1]
    for engine, m in gap_frames.items():
        if not m.empty:
            ax.scatter(
                m.homo_lumo_gap_dft,
                m.homo_lumo_gap,
                s=10,
                label=f"{engine} (n={len(m)}, MAE {report[engine]['homo_lumo_gap']['mae']:.2f})",
            )
    ax.set(xlabel="DFT HOMO-LUMO gap (eV)", ylabel="engine (eV)", title="HOMO-LUMO gap")
    for ax in axes:
        lo, hi = ax.get_xlim()
        lo2, hi2 = ax.get_ylim()
        lim = (min(lo, lo2), max(hi, hi2))
        ax.plot(lim, lim, "k--", lw=0.8)
        ax.set_xlim(lim)
        ax.set_ylim(lim)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "engine_vs_dft.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
