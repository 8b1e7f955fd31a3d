"""Hydrogen combustion: one geometry, two spin states, one spin-blind model (issue 13, item 6).

The data set labels every channel on its own spin surface (the multiplicity column of
``ffpt_ase/applications/h2combustion/channels.json``), and five compositions come with two
multiplicities: HOO (01 quartet, 09 doublet), HHO (02 triplet, 08 singlet), HHOO (04, 10,
11 triplet; 15 singlet), OO (06a singlet, 06b triplet) and HOOO (12a doublet, 12b quartet).
A model that sees only the geometry (NewtonNet, the paper's and ours) must give one energy
where the data give two. This script measures what that costs, from the data alone and
then for the models:

1. **Label conflicts.** Frames of the same composition and different multiplicity whose
   geometries agree within ``--tolerance`` (largest difference of their interatomic
   distances, sorted per element pair, so equal up to a permutation of like atoms; 0.01 A).
   For each such pair no spin-blind model can err by less than |E_1 - E_2| / 2 on average
   over the two frames. Pairs of the *same* multiplicity matched the same way (repeated
   geometries left out) are the control: their energy differences measure what the
   tolerance alone allows on these surfaces.
2. **Channel 01's well.** The channel-01 walkers (quartet OH + O -> H + O2) spend most of
   their time as HO2 and none came back to O + OH in 50 ps. The HO2 minimum of the data is
   channel 09's, on the *doublet* surface; here its energy relative to channel 01's O + OH
   from the data, from PySCF at the data set's level (UKS wB97X-V/cc-pVTZ) in both spin
   states, and from the models; and how close any quartet frame of the data comes to it.

The PySCF single points (about 2-4 min each on this machine) are kept in
``benchmarks/results/h2combustion_spin_dft.json`` (committed), so a rerun needs no PySCF.

    .venv/bin/python benchmarks/h2combustion_spin.py

Writes ``benchmarks/results/h2combustion_spin.{json,md}``. Energies in kJ/mol, distances in A.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import bench_common as bench
import numpy as np
from ase import Atoms, units

from ffpt_ase.analysis.label_conflicts import distance_descriptor, label_conflicts
from ffpt_ase.applications.h2combustion.channels import get_channel
from ffpt_ase.applications.h2combustion.dataset import DATA_LEVEL, data_files
from ffpt_ase.data import Frames, read_combustion_npz

KJ = units.kJ / units.mol   # eV per kJ/mol
DFT_CACHE = bench.RESULTS / "h2combustion_spin_dft.json"


def spin_labelled_frames(data: Path) -> Frames:
    """Every frame of the benchmark's files with ``extras['multiplicity']`` from its
    channel (the per-frame ``RXN`` id: the ``12_*`` files mix 12a and 12b)."""
    parts = []
    for f in data_files(data):
        frames = read_combustion_npz(f, time_ordered=False)
        rxn = frames.extras["reaction"]
        mult = {r: get_channel(r).multiplicity for r in np.unique(rxn)}
        frames.extras = {"reaction": rxn, "multiplicity": np.array([mult[r] for r in rxn])}
        frames.time = None
        parts.append(frames)
    return Frames.concatenate(parts)


def _dft_energy(atoms: Atoms, multiplicity: int, key: str, cache: dict) -> float:
    """PySCF energy (eV) at the data set's level, kept in ``cache`` under ``key``."""
    if key not in cache:
        from ffpt_ase.abinitio import PySCFCalculator
        calc = PySCFCalculator(xc=DATA_LEVEL["xc"], basis=DATA_LEVEL["basis"],
                               multiplicity=multiplicity)
        print(f"PySCF {DATA_LEVEL['xc']}/{DATA_LEVEL['basis']}: {key} ...", flush=True)
        cache[key] = float(calc.get_potential_energy(atoms))
        DFT_CACHE.write_text(json.dumps(cache, indent=1) + "\n")
    return cache[key]


def channel01_well(frames: Frames, models: dict, with_dft: bool) -> dict:
    """Channel 09's HO2 minimum against channel 01's O + OH (module docstring, item 2)."""
    from ffpt_ase import FFPTCalculator
    from ffpt_ase.abinitio import free_atom_energies
    rxn, e = frames.extras["reaction"], frames.energy
    ch01 = get_channel("01")
    i01 = np.flatnonzero(rxn == "01")
    i09 = np.flatnonzero(rxn == "09")
    pos01 = frames.positions[i01, :3]
    d01 = np.linalg.norm(pos01[:, :, None] - pos01[:, None], axis=-1)
    reactant = i01[ch01.classify(d01) == "reactant"]
    ref = reactant[np.argmin(e[reactant])]           # lowest O + OH frame of channel 01
    well = i09[np.argmin(e[i09])]                     # lowest HO2 frame of channel 09
    atoms_ref, atoms_well = frames.to_atoms(int(ref)), frames.to_atoms(int(well))
    symbols = atoms_well.get_chemical_symbols()
    dw = distance_descriptor(frames.positions[[well], :3], atoms_well.numbers)
    dq = distance_descriptor(pos01, frames.to_atoms(int(i01[0])).numbers)
    gap = np.abs(dq - dw).max(axis=1)
    nearest = i01[np.argmin(gap)]
    rows = {"data set, doublet (the channel-09 frame)": (e[well] - e[ref]) / KJ}
    record = {"reference_frame": {"reaction": "01", "energy_eV": float(e[ref]),
                                  "positions_A": atoms_ref.positions.tolist()},
              "well_frame": {"reaction": "09", "energy_eV": float(e[well]),
                             "positions_A": atoms_well.positions.tolist()},
              "nearest_quartet_frame": {"max_distance_difference_A": float(gap.min()),
                                        "energy_minus_reference_kJ_per_mol":
                                            float((e[nearest] - e[ref]) / KJ),
                                        "frames_within_0.1_A": int((gap < 0.1).sum()),
                                        "frames_within_0.2_A": int((gap < 0.2).sum())}}
    if with_dft:
        cache = json.loads(DFT_CACHE.read_text()) if DFT_CACHE.exists() else {}
        if "free_atoms" not in cache:
            cache["free_atoms"] = free_atom_energies(["H", "O"], **DATA_LEVEL)
            DFT_CACHE.write_text(json.dumps(cache, indent=1) + "\n")
        atom_e = sum(cache["free_atoms"][s] for s in symbols)
        dft = {mult: _dft_energy(atoms_well, mult, f"well multiplicity {mult}", cache) - atom_e
               for mult in (2, 4)}
        record["dft"] = {"level": DATA_LEVEL, "energy_vs_free_atoms_eV": dft,
                         "doublet_minus_data_kJ_per_mol": float((dft[2] - e[well]) / KJ)}
        rows["PySCF doublet (check of the data)"] = (dft[2] - e[ref]) / KJ
        rows["PySCF quartet, channel 01's surface"] = (dft[4] - e[ref]) / KJ
    for name, path in models.items():
        calc = FFPTCalculator.from_checkpoints(path, dtype="float64")
        ew, er = (calc.get_potential_energy(a) for a in (atoms_well.copy(), atoms_ref.copy()))
        rows[f"model {name}"] = (ew - er) / KJ
    record["well_minus_reference_kJ_per_mol"] = {k: float(v) for k, v in rows.items()}
    return record


def markdown(conflicts: list, well: dict, tolerance: float) -> str:
    lines = [f"Label conflicts: frames of one composition whose interatomic distances agree "
             f"within {tolerance:g} A (sorted per element pair), nearest match of each frame of "
             "the first multiplicity; a spin-blind model errs on such a pair by at least "
             "|dE|/2 on average (the floor). Same-multiplicity rows are the control.", "",
             "| composition | multiplicities | channels | pairs | median abs dE (kJ/mol) | "
             "90th percentile | max | spin-blind floor (kJ/mol) |",
             "|---|---|---|---|---|---|---|---|"]
    for c in conflicts:
        mult = " vs ".join(map(str, c["labels"])) + (" (control)" if c["control"] else "")
        if not c["pairs"]:
            lines.append(f"| {c['composition']} | {mult} | - | 0 | - | - | - | - |")
            continue
        lines.append(f"| {c['composition']} | {mult} | {' '.join(c['tags'])} | {c['pairs']} | "
                     f"{c['median_abs_kJ_per_mol']:.1f} | {c['p90_abs_kJ_per_mol']:.1f} | "
                     f"{c['max_abs_kJ_per_mol']:.1f} | "
                     f"{'-' if c['control'] else format(c['spin_blind_floor_kJ_per_mol'], '.1f')} |")
    near = well["nearest_quartet_frame"]
    lines += ["", "Channel 01: E(channel 09's HO2 minimum) - E(channel 01's lowest O + OH "
              "frame), kJ/mol", "", "| source | E(HO2 minimum) - E(O + OH) |", "|---|---|"]
    lines += [f"| {k} | {v:+.1f} |" for k, v in well["well_minus_reference_kJ_per_mol"].items()]
    lines += ["", f"The nearest channel-01 (quartet) frame to that minimum differs in its "
              f"distances by up to {near['max_distance_difference_A']:.2f} A and lies "
              f"{near['energy_minus_reference_kJ_per_mol']:+.1f} kJ/mol from O + OH; "
              f"{near['frames_within_0.1_A']} of the channel's frames lie within 0.1 A, "
              f"{near['frames_within_0.2_A']} within 0.2 A."]
    if "dft" in well:
        lines.append(f"PySCF's doublet differs from the data set's frame by "
                     f"{well['dft']['doublet_minus_data_kJ_per_mol']:+.2f} kJ/mol.")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data/h2combustion")
    ap.add_argument("--model", action="append", default=[], metavar="NAME=PATH")
    ap.add_argument("--tolerance", type=float, default=0.01,
                    help="largest difference of matched interatomic distances (A)")
    ap.add_argument("--no-dft", action="store_true", help="skip the PySCF single points")
    args = ap.parse_args()
    if not Path(args.data, "npz").is_dir():
        sys.exit(f"error: --data {args.data}: no npz/ folder (the hydrogen-combustion data set)")
    if not args.tolerance > 0:
        sys.exit(f"error: --tolerance must be > 0 A, got {args.tolerance}")
    models = bench.named_models(args.model, default={
        "scratch": str(bench.MODELS / "h2combustion" / "scratch.pt"),
        "FFPT-FT": str(bench.MODELS / "h2combustion" / "finetune.pt")})
    command = bench.announce()
    frames = spin_labelled_frames(Path(args.data))
    conflicts = label_conflicts(frames, frames.extras["multiplicity"], args.tolerance,
                                tags=frames.extras["reaction"])
    well = channel01_well(frames, models, with_dft=not args.no_dft)
    bench.write_results("h2combustion_spin", {"command": command, "tolerance_A": args.tolerance,
                                              "models": models, "conflicts": conflicts,
                                              "channel01_well": well},
                        markdown(conflicts, well, args.tolerance), command)


if __name__ == "__main__":
    main()
