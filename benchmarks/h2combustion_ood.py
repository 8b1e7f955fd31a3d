"""Hydrogen combustion: the models on frames outside the data set's distribution, at the
data set's level of theory (issue 13, item 6).

16 geometries (``ffpt_ase.applications.h2combustion.ood``: HO2 with its O-H bond from 0.55
to 3 A, closed H-O-H and O-O-H angles, compressed O-O, O-H and H-H bonds) labelled with
PySCF at UKS wB97X-V/cc-pVTZ (the data set's level; tens of seconds per gradient here),
energies relative to free atoms at that level, as the data set's. The labels are kept in
``benchmarks/results/h2combustion_ood_frames.npz`` (computed here, not taken from the data
set), so the scoring reruns without PySCF. The energy zero is checked against the data set:
the channel-09 reactant's total energy (``geometries/reactant_09.xyz``) minus our free
atoms against the lowest HO2 energy of the data set.

    .venv/bin/python benchmarks/h2combustion_ood.py --model scratch=PATH --model FFPT-FT=PATH

Writes ``benchmarks/results/h2combustion_ood.{json,md}``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import bench_common as bench
import numpy as np
from ase import units

from ffpt_ase.applications.h2combustion.ood import DATA_LEVEL, label_ood
from ffpt_ase.data import Frames

FRAMES = bench.RESULTS / "h2combustion_ood_frames.npz"
KCAL = units.kcal / units.mol   # eV per kcal/mol (the data set's energy unit)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data/h2combustion")
    ap.add_argument("--work", default=str(bench.WORK / "h2combustion_ood"))
    ap.add_argument("--model", action="append", default=[], metavar="NAME=PATH")
    ap.add_argument("--label-only", action="store_true", help="label the frames and stop")
    args = ap.parse_args()
    models = bench.named_models(args.model)
    command = bench.announce()
    if FRAMES.exists():
        frames = Frames.load(FRAMES)
    else:
        frames = label_ood(Path(args.work))
        frames.save(FRAMES)
    check = None
    reactant = Path(args.data) / "geometries" / "reactant_09.xyz"
    irc = Path(args.data) / "npz" / "09_irc.npz"
    if reactant.exists() and irc.exists():
        import re
        # the comment line reads "Step -22 E=    -150.912955 |G|= ..." (Hartree)
        total = float(re.search(r"E=\s*(-?\d+\.\d+)",
                                reactant.read_text().splitlines()[1]).group(1)) * units.Hartree
        atoms = frames.metadata["free_atom_energies_eV"]
        ours = total - atoms["H"] - 2 * atoms["O"]
        data_min = float(np.load(irc)["E"].min()) * KCAL
        check = {"reactant_09_relative_to_our_free_atoms_eV": ours,
                 "data_09_irc_lowest_eV": data_min, "difference_meV": 1e3 * (ours - data_min)}
        print(f"[ood] energy zero: reactant 09 {ours:.4f} eV from our free atoms, data "
              f"{data_min:.4f} eV ({1e3 * (ours - data_min):+.1f} meV)", flush=True)
    if args.label_only:
        return
    if not models:
        sys.exit("give at least one --model NAME=PATH to score")
    import torch

    from ffpt_ase.model.potential import load_potential
    from ffpt_ase.training.metrics import predict
    labels = [str(x) for x in frames.extras["label"]]
    species = [str(x) for x in frames.extras["species"]]
    real = frames.numbers_per_frame > 0
    scores = {}
    for name, path in models.items():
        model = load_potential(path, dtype=torch.float64)
        e, f = predict(model, frames, batch_size=64, dtype=torch.float64)
        scores[name] = {
            "energy_error_eV": (e - frames.energy).tolist(),
            "forces_mae_eV_per_A": [float(np.abs(f[k] - frames.forces[k])[real[k]].mean())
                                    for k in range(len(frames))],
            "energy_mae_eV": float(np.abs(e - frames.energy).mean()),
            "forces_mae_all_eV_per_A": float(np.abs(f - frames.forces)[real].mean())}
    names = list(models)
    lines = ["Out-of-distribution frames at UKS wB97X-V/cc-pVTZ (PySCF): energy error (eV) / "
             "force MAE (eV/A) per frame", "",
             "| species | change | E_ref (eV) | " + " | ".join(names) + " |",
             "|---|---|---|" + "---|" * len(names)]
    for k in range(len(frames)):
        cells = [f"{scores[n]['energy_error_eV'][k]:+.2f} / "
                 f"{scores[n]['forces_mae_eV_per_A'][k]:.2f}" for n in names]
        lines.append(f"| {species[k]} | {labels[k]} | {frames.energy[k]:.2f} | "
                     + " | ".join(cells) + " |")
    lines.append("| all | MAE | | " + " | ".join(
        f"{scores[n]['energy_mae_eV']:.2f} / {scores[n]['forces_mae_all_eV_per_A']:.2f}"
        for n in names) + " |")
    bench.write_results("h2combustion_ood", {
        "command": command, "level": DATA_LEVEL, "models": models, "energy_zero_check": check,
        "frames": {"species": species, "labels": labels,
                   "energy_eV": frames.energy.tolist()}, "scores": scores},
        "\n".join(lines), command)


if __name__ == "__main__":
    main()
