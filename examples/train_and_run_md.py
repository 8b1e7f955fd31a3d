"""Train a small NewtonNet on rattled HO2 (Q-Force labels), then run 1 ps of Langevin MD
with FFPTCalculator. About a minute on two cores.

    .venv/bin/python examples/train_and_run_md.py

The same from the shell:
    ffpt-ase sample --system HO2 --n 4000 -o ho2_pt.npz
    ffpt-ase train --stage pretrain --data ho2_pt.npz -o runs/ho2_pt --epochs 30 --features 32
"""

import numpy as np
from ase import units
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import thermalize_momenta

from ffpt_ase import FFPTCalculator, TrainConfig, sample_system, train
from ffpt_ase.applications.systems import get_system

frames = sample_system("HO2", 4000, sigma=0.2, seed=0)
frames.save("ho2_pt.npz")
summary = train(TrainConfig(stage="pretrain", data="ho2_pt.npz", output="runs/ho2_pt",
                            epochs=30, features=32, interactions=2, batch_size=32, lr=1e-3))
print(summary["final"])

atoms = get_system("HO2")[1]
atoms.calc = FFPTCalculator.from_checkpoints("runs/ho2_pt/best.pt")
thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(0))
dyn = Langevin(atoms, timestep=0.5 * units.fs, temperature_K=300,
               friction=2.0 / (1000 * units.fs), fixcm=False, rng=np.random.default_rng(1))


def report():
    d = atoms.get_all_distances()
    print(f"t = {dyn.get_time() / units.fs:6.0f} fs  E = {atoms.get_potential_energy():8.3f} eV"
          f"  r(O-O) = {d[0, 1]:.3f} A  r(O-H) = {min(d[0, 2], d[1, 2]):.3f} A")


dyn.attach(report, interval=200)
dyn.run(2000)  # 1 ps
