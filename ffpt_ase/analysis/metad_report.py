"""FES report of a metadynamics run: what ``ffpt-ase fes`` writes.

From a run folder (HILLS, COLVAR, state.json) or a bare HILLS file:

* ``fes.dat`` / ``fes.png``: FES on the CV grid from the hills (text: CVs then kJ/mol),
  2D contours with the reactant and product basins marked;
* ``fes_<cv>.dat`` / ``fes_1d.png``: 1D projections, from the hills and, when COLVAR is
  there, from c(t)-reweighted frames;
* ``convergence.json`` / ``convergence.png``: Delta F = F(product) - F(reactant) versus
  simulation time, with block-average error bars (needs COLVAR and the channel);
* ``fes_summary.json``.

Basins of a channel are the points of CV space of its ideal reactant and product
(a bond at equilibrium counts 0.83 in a coordination number, a broken one ~0), and a frame
belongs to a basin within a CV-space radius of 0.25 of that point.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .fes import (KB_KJMOL, convergence, fes_from_hills, read_hills, read_plumed_table,
                  reweighted_fes, reweighting_weights)
from .plots import plot_convergence, plot_fes_1d, plot_fes_2d

BASIN_RADIUS = 0.25


def basin_points(cid) -> dict:
    """CV-space points of the ideal reactant and product of a channel."""
    from ..simulate.channels import get_channel
    from ..simulate.decks import SWITCH_SCALE
    ch = get_channel(cid)

    x = 1.0 / SWITCH_SCALE  # r_eq / R_0: a bond at equilibrium
    on = (1 - x**6) / (1 - x**12)

    def value(pairs, bonds):
        bonds = {tuple(sorted(b)) for b in bonds}
        return float(sum(on if tuple(sorted(p)) in bonds else 0.0 for p in pairs))

    return {"reactant": (value(ch.cv1, ch.reactant_bonds), value(ch.cv2, ch.reactant_bonds)),
            "product": (value(ch.cv1, ch.product_bonds), value(ch.cv2, ch.product_bonds))}


def fes_report(source: str | Path, output: str | Path, temperature: float = 300.0,
               bins: int = 200, reaction: str | None = None, colvar: str | Path | None = None,
               bias_columns=("metad.bias",), static_columns=("walls.bias",)) -> dict:
    source = Path(source)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    folder = source if source.is_dir() else source.parent
    hills_file = source / "HILLS" if source.is_dir() else source
    if colvar is None and (folder / "COLVAR").exists():
        colvar = folder / "COLVAR"
    if reaction is None and (folder / "state.json").exists():
        reaction = json.loads((folder / "state.json").read_text())["config"]["reaction"]
    hills = read_hills(hills_file)
    lo = np.minimum(hills.centers.min(0) - 3 * hills.sigmas.max(0), -0.1)
    hi = hills.centers.max(0) + 3 * hills.sigmas.max(0)
    fes = fes_from_hills(hills, lo, hi, [bins] * hills.n_cv, temperature)
    written = [fes.save_text(out / "fes.dat")]
    summary = {"hills": str(hills_file), "n_hills": int(len(hills.heights)),
               "biasfactor": hills.biasfactor, "temperature_K": temperature,
               "cv_names": hills.cv_names, "reaction": reaction}
    basins = basin_points(reaction) if reaction else {}
    if hills.n_cv == 2:
        written.append(plot_fes_2d(fes, out / "fes.png", basins,
                                   title=f"rxn {reaction}: FES from hills" if reaction else ""))
    curves = {}
    for k, name in enumerate(hills.cv_names):
        proj = fes.project(k) if hills.n_cv > 1 else fes
        written.append(proj.save_text(out / f"fes_{name}.dat"))
        curves[f"{name} (hills)"] = (proj.axes[0], proj.free_energy)

    if colvar is not None and Path(colvar).exists():
        fields, data, _ = read_plumed_table(colvar)
        col = {f: data[:, i] for i, f in enumerate(fields)}
        bias = sum(col[c] for c in bias_columns if c in col)
        static = sum(col[c] for c in static_columns if c in col) if any(
            c in col for c in static_columns) else None
        logw = reweighting_weights(col["time"], bias, hills, temperature, lo, hi,
                                   [min(bins, 120)] * hills.n_cv, static)
        for name in hills.cv_names:
            rw = reweighted_fes(col[name], logw, bins=60, temperature=temperature, name=name)
            written.append(rw.save_text(out / f"fes_{name}_reweighted.dat"))
            curves[f"{name} (reweighted)"] = (rw.axes[0], rw.free_energy)
        if basins and hills.n_cv == 2:
            s = np.column_stack([col[n] for n in hills.cv_names])
            near = {k: np.linalg.norm(s - np.array(p), axis=1) < BASIN_RADIUS
                    for k, p in basins.items()}
            conv = convergence(s, logw, col["time"] * 1e-3, near["reactant"], near["product"],
                               temperature=temperature)
            (out / "convergence.json").write_text(json.dumps(conv, indent=1))
            written += [out / "convergence.json",
                        plot_convergence(conv, out / "convergence.png",
                                         title=f"rxn {reaction}: F(product) - F(reactant)")]
            summary["delta_f_product_minus_reactant_kJ_per_mol"] = conv["delta_f"][-1]
            summary["delta_f_error_kJ_per_mol"] = conv["error"][-1]
            summary["frames_in_basins"] = {k: int(v.sum()) for k, v in near.items()}
        summary["colvar"] = str(colvar)
        summary["kT_kJ_per_mol"] = KB_KJMOL * temperature
    written.append(plot_fes_1d(curves, out / "fes_1d.png", "collective variable",
                               title="1D free-energy profiles"))
    summary["files"] = [str(p) for p in written]
    (out / "fes_summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary
