"""FES report of a metadynamics run: what ``ffpt-ase fes`` writes.

From a run folder (HILLS, COLVAR, state.json) or a bare HILLS file:

* ``fes.dat`` / ``fes.png``: FES on the CV grid from the hills (text: CVs then kJ/mol),
  2D contours with the reactant and product points marked;
* ``fes_<cv>.dat`` / ``fes_1d.png``: 1D projections, from the hills and, when COLVAR is
  there, from c(t)-reweighted frames;
* ``convergence.json`` / ``convergence.png``: Delta F = F(product) - F(reactant) versus
  simulation time with error bars from the statistical inefficiency of the reweighted series;
* ``fes_summary.json`` (no NaN: what cannot be estimated is None with a note in words;
  when the product basin was never reached, ``delta_f_lower_bound_kJ_per_mol`` is the depth
  the hills filled, the free energy the product must at least have). Delta F needs both
  basins visited in the second half of the run too (:func:`~.fes.basin_delta_f`): a basin
  seen only while the bias was building, as a start the walker left and never revisited,
  gives a note and no Delta F.

**Temperature.** kT is the run's: ``state.json`` records the MD temperature (the driver
also sets the deck's METAD TEMP to it). A bare HILLS file needs ``temperature=``.

**Basins** come from the caller (:class:`Basins`): a function that labels every COLVAR
frame (for a combustion channel, by its chemistry: the hydrogen-combustion application's
``channel_basins``); frames with the ``excluded`` label (e.g. unphysical) belong to no
basin and their fraction is reported. Without basins the report is the FES alone.

**Walls.** The decks' confining UPPER_WALLS are not part of the free-energy landscape one
asks about: reweighting them in gives frames that push on a wall weights up to
exp(wall bias / kT). By default they are not reweighted; when some frame's wall bias exceeds
2 kT the summary says so and gives Delta F both ways.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .fes import (KB_KJMOL, basin_delta_f, combine_hills, convergence, fes_from_hills,
                  hills_files, read_hills,
                  read_plumed_table, reweighted_fes, reweighting_weights)
from .plots import plot_convergence, plot_fes_1d, plot_fes_2d

WALL_NOTE_KT = 2.0          # wall bias (in kT) above which the report gives Delta F both ways
MIN_HILLS = 10              # fewer hills: the FES is reported as not meaningful


@dataclass
class Basins:
    """Two basins of a metadynamics run, for Delta F = F(second) - F(first).

    ``classify(colvar)`` takes the COLVAR columns (name -> array) and returns one label per
    frame (or ``None`` with ``missing_note`` when the file lacks what it needs); labels are
    counted under ``labels``, and frames labelled ``excluded`` are reported as a fraction.
    ``points`` (name -> CV tuple) are marked on the FES plot.
    """

    classify: Callable
    names: tuple = ("reactant", "product")
    labels: tuple = ("reactant", "product", "transition", "unphysical")
    excluded: str | None = "unphysical"
    points: dict = field(default_factory=dict)
    title: str = ""
    missing_note: str = "the COLVAR file lacks the columns the basins need: no Delta F"


def json_safe(x):
    """``x`` with every non-finite float replaced by None (JSON has no NaN)."""
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def run_folder(source: str | Path) -> Path:
    """The run folder of a source: the folder itself, or the one holding a HILLS file."""
    source = Path(source)
    return source if source.is_dir() else source.parent


def run_settings(source: str | Path) -> dict:
    """The settings a metadynamics run recorded in its ``state.json`` (``config`` merged with
    ``record``), or {} when there is none; ``source`` is the run folder or its HILLS file,
    or one walker's folder (``walker_KK``) of a multi-walker run, whose settings are the
    run's."""
    folder = run_folder(source)
    path = folder / "state.json"
    if not path.exists() and folder.name.startswith("walker_"):
        path = folder.parent / "state.json"
    if not path.exists():
        return {}
    try:
        state = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); the run's state is damaged") from err
    return {**state.get("config", {}), **state.get("record", {})}


def fes_report(source: str | Path, output: str | Path, temperature: float | None = None,
               bins: int = 200, colvar: str | Path | None = None,
               bias_columns=("metad.bias",), wall_columns=("walls.bias",),
               reweight_walls: bool = False, basins: Basins | None = None,
               record: dict | None = None) -> dict:
    """Write the report of the module docstring into ``output``; returns the summary.

    ``temperature`` (K) defaults to the run's (``state.json``); ``record`` (facts about the
    run, e.g. its reaction) is copied into the summary.
    """
    source = Path(source)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    folder = run_folder(source)
    hills_paths = hills_files(source) if source.is_dir() else [source]
    hills_file = hills_paths[0] if hills_paths else source / "HILLS"
    colvars = [Path(colvar)] if colvar is not None else \
        [folder / "COLVAR"] if (folder / "COLVAR").exists() else \
        sorted(folder.glob("walker_*/COLVAR")) if len(hills_paths) > 1 else []
    if not hills_file.exists():
        raise FileNotFoundError(f"no HILLS file at {hills_file} (give a metadynamics run "
                                "folder or a HILLS file)")
    run_cfg = run_settings(source)
    notes = []
    run_t = run_cfg.get("temperature_K")
    if temperature is None:
        if run_t is None:
            raise ValueError(f"no state.json beside {hills_file} records the run's temperature: "
                             "give it (--temperature K)")
        temperature = float(run_t)
    elif run_t is not None and abs(float(run_t) - temperature) > 1e-9:
        notes.append(f"analysed at {temperature:g} K, but the run was at {run_t} K")
    kT = KB_KJMOL * temperature
    hills = combine_hills(read_hills(p) for p in hills_paths)
    if len(hills.heights) == 0:
        raise ValueError(f"{hills_file} holds no hills yet: run longer before analysing")
    if len(hills.heights) < MIN_HILLS:
        notes.append(f"only {len(hills.heights)} hills: the FES is not meaningful yet")
    lo = np.minimum(hills.centers.min(0) - 3 * hills.sigmas.max(0), -0.1)
    hi = hills.centers.max(0) + 3 * hills.sigmas.max(0)
    fes = fes_from_hills(hills, lo, hi, [bins] * hills.n_cv, temperature)
    written = [fes.save_text(out / "fes.dat")]
    summary = {"hills": ", ".join(str(p) for p in hills_paths), "walkers": len(hills_paths),
               "n_hills": int(len(hills.heights)),
               "biasfactor": hills.biasfactor, "temperature_K": temperature,
               "kT_kJ_per_mol": kT, "cv_names": hills.cv_names, **(record or {})}
    if hills.n_cv == 2:
        title = f"{basins.title}: FES from hills" if basins and basins.title else ""
        written.append(plot_fes_2d(fes, out / "fes.png", basins.points if basins else {},
                                   title=title))
    curves = {}
    for k, name in enumerate(hills.cv_names):
        proj = fes.project(k) if hills.n_cv > 1 else fes
        written.append(proj.save_text(out / f"fes_{name}.dat"))
        curves[f"{name} (hills)"] = (proj.axes[0], proj.free_energy)

    if colvars and all(p.exists() for p in colvars):
        tables = [read_plumed_table(p) for p in colvars]
        fields = tables[0][0]
        if any(t[0] != fields for t in tables):
            raise ValueError(f"the walkers' COLVAR files have different columns ({colvars})")
        data = np.concatenate([t[1] for t in tables])
        col = {f: data[:, i] for i, f in enumerate(fields)}
        bias = sum(col[c] for c in bias_columns if c in col)
        walls = sum(col[c] for c in wall_columns if c in col) if any(
            c in col for c in wall_columns) else np.zeros(len(data))
        logw = reweighting_weights(col["time"], bias, hills, temperature, lo, hi,
                                   [min(bins, 120)] * hills.n_cv,
                                   walls if reweight_walls else None)
        for name in hills.cv_names:
            rw = reweighted_fes(col[name], logw, bins=60, temperature=temperature, name=name)
            written.append(rw.save_text(out / f"fes_{name}_reweighted.dat"))
            curves[f"{name} (reweighted)"] = (rw.axes[0], rw.free_energy)
        summary["colvar"] = ", ".join(str(p) for p in colvars)
        summary["walls_reweighted"] = reweight_walls
        summary["max_wall_bias_kT"] = float(walls.max() / kT)
        if basins is not None:
            summary.update(_basins(basins, col, logw, walls, kT, temperature, reweight_walls,
                                   notes, out, written))
            a, b = basins.names
            if summary.get("frames", {}).get(b) == 0 and summary["frames"][a] > 0:
                depth = float(fes.free_energy.max())
                summary["delta_f_lower_bound_kJ_per_mol"] = depth
                notes.append(f"the {b} basin was not reached: the hills filled the region "
                             f"explored to {depth:.0f} kJ/mol above its minimum, so the "
                             f"{b} lies at least about that high (run longer to measure "
                             f"Delta F)")
    written.append(plot_fes_1d(curves, out / "fes_1d.png", "collective variable",
                               title="1D free-energy profiles"))
    summary["notes"] = notes
    summary["files"] = [str(p) for p in written]
    summary = json_safe(summary)
    (out / "fes_summary.json").write_text(json.dumps(summary, indent=1, allow_nan=False))
    return summary


def _basins(basins, col, logw, walls, kT, temperature, reweight_walls, notes, out, written):
    """Basin counts, the excluded fraction and Delta F with its error (module doc)."""
    kind = basins.classify(col)
    if kind is None:
        notes.append(basins.missing_note)
        return {}
    kind = np.asarray(kind)
    counts = {k: int((kind == k).sum()) for k in basins.labels}
    res = {"frames": counts}
    if basins.excluded:
        res["unphysical_fraction"] = counts.get(basins.excluded, 0) / len(kind)
    r, p = kind == basins.names[0], kind == basins.names[1]
    names = tuple(f"the {n} basin" for n in basins.names)
    times = col["time"] * 1e-3     # ps
    main = basin_delta_f(logw, r, p, temperature, names, times=times)
    res["delta_f_product_minus_reactant_kJ_per_mol"] = main["delta_f"]
    res["delta_f_error_kJ_per_mol"] = main["error"]
    res["delta_f_details"] = main
    if main["note"]:
        notes.append(main["note"])
    if walls.max() > WALL_NOTE_KT * kT:
        other = logw - walls / kT if reweight_walls else logw + walls / kT
        alt = basin_delta_f(other, r, p, temperature, names, times=times)
        key = "delta_f_walls_not_reweighted_kJ_per_mol" if reweight_walls else \
            "delta_f_walls_reweighted_kJ_per_mol"
        res[key] = alt["delta_f"]
        res[key.replace("_kJ_per_mol", "_error_kJ_per_mol")] = alt["error"]
        notes.append(f"some frames push on the confining walls (up to "
                     f"{walls.max() / kT:.1f} kT): Delta F is given with the walls "
                     f"{'reweighted' if reweight_walls else 'not reweighted'} and, in {key}, "
                     f"{'not ' if reweight_walls else ''}reweighted")
    conv = convergence(logw, times, r, p, temperature=temperature)
    (out / "convergence.json").write_text(json.dumps(json_safe(conv), indent=1))
    written.append(out / "convergence.json")
    if any(v is not None for v in conv["delta_f"]):
        a, b = basins.names
        written.append(plot_convergence(conv, out / "convergence.png",
                                        title=f"{basins.title}: F({b}) - F({a})".lstrip(": ")))
    return res


def delta_f_line(s: dict) -> str:
    """One line on Delta F, the basins and the unphysical fraction of a fes_report summary."""
    if "frames" not in s:
        return f"FES at {s['temperature_K']:g} K from {s['n_hills']} hills (no basins)"
    df, err = s["delta_f_product_minus_reactant_kJ_per_mol"], s["delta_f_error_kJ_per_mol"]
    value = "not estimable" if df is None else f"{df:.1f}" + (
        f" +- {err:.1f} kJ/mol" if err is not None else " kJ/mol (no error bar)")
    if df is None and s.get("delta_f_lower_bound_kJ_per_mol") is not None:
        value = (f"> ~{s['delta_f_lower_bound_kJ_per_mol']:.0f} kJ/mol (product not reached; "
                 "the depth the hills filled)")
    frames = ", ".join(f"{n} {'between' if k == 'transition' else k}"
                       for k, n in s["frames"].items())
    excluded = f" ({100 * s['unphysical_fraction']:.1f} % unphysical, excluded)" \
        if "unphysical_fraction" in s else ""
    return (f"Delta F (product - reactant) at {s['temperature_K']:g} K: {value}; frames: "
            f"{frames}{excluded}")
