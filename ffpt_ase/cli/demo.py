"""``ffpt-ase demo``: the FFPT pipeline on embedded defaults, without external data.

Currently: build the three classical teachers (Q-Force combustion species, flexible TIP3P
water monomer, GAFF2 aspirin), rattle and label pre-training frames for each, write them
in the package's ``.npz`` format, and plot the label statistics and the teacher's O-H
dissociation curve of HO2 (the region where scratch-trained MLIPs collapse).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..analysis.plots import plot_energy_scan, plot_frame_statistics
from ..analysis.scans import bond_scan
from ..data.frames import Frames
from ..sampling import RattleSampler
from ..systems import COMBUSTION_SPECIES, get_system


def run_demo(output: str | Path = "demo_output", n_per_species: int = 20000, seed: int = 0):
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    written = []
    print(f"[1/3] rattled pre-training frames (sigma 0.2 A, {n_per_species} per system, "
          f"seed {seed})")
    sets = {}
    for name in list(COMBUSTION_SPECIES) + ["water", "aspirin"]:
        calc, ref, teacher = get_system(name)
        sampler = RattleSampler(calc, ref, sigma=0.2, seed=seed, teacher_name=teacher,
                                system_name=name)
        frames = sampler.sample(n_per_species, show_progress=False)
        path = frames.save(out / f"pretrain_{name}.npz")
        written.append(path)
        sets[name] = frames
        print(f"      {name:8s} {teacher:7s} {len(frames):7d} frames  "
              f"{frames.metadata['frames_per_second']:>10.0f} frames/s  "
              f"E {frames.energy.min():9.3f} .. {frames.energy.max():9.3f} eV")
    combustion = Frames.concatenate([sets[s] for s in COMBUSTION_SPECIES])
    combustion.metadata = {"kind": "rattled", "teacher": "qforce",
                           "species": list(COMBUSTION_SPECIES), "seed": seed}
    written.append(combustion.save(out / "pretrain_combustion.npz"))
    print(f"      combined combustion pre-training set: {len(combustion)} frames")

    print("[2/3] plots of the teacher labels")
    written.append(plot_frame_statistics({k: sets[k] for k in ("H2", "OH", "H2O", "HO2", "H2O2")},
                                         out / "pretrain_combustion_labels.png"))
    written.append(plot_frame_statistics({k: sets[k] for k in ("water", "aspirin")},
                                         out / "pretrain_water_aspirin_labels.png"))

    print("[3/3] Q-Force teacher along the O-H distance of HO2 (0.4 .. 3.0 A)")
    calc, ref, _ = get_system("HO2")
    r = np.linspace(0.4, 3.0, 131)
    calc.bind(ref)
    h = int(np.nonzero(ref.numbers == 1)[0][0])
    o = next(int(a if b == h else b) for a, b in calc.topology.bonds if h in (a, b))
    e = bond_scan(calc, ref, o, h, r)
    np.savetxt(out / "ho2_oh_scan_qforce.txt", np.column_stack([r, e]),
               header="r_OH [A]   E_QForce [eV] (zero = H + O2 dissociated, O-O frozen)")
    written.append(out / "ho2_oh_scan_qforce.txt")
    written.append(plot_energy_scan({"Q-Force teacher": (r, e)}, out / "ho2_oh_scan_qforce.png",
                                    "O-H distance [A]", "HO2 -> H + O2: teacher energy"))
    print(f"      E(0.4 A) = {e[0]:.2f} eV (repulsive wall), E(3.0 A) = {e[-1]:.2f} eV")
    print(f"done in {time.perf_counter() - t_start:.1f} s; outputs:")
    for p in written:
        print(f"  {p}")
    return written
