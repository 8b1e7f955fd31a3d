"""The classical teachers are ordinary ASE calculators: 1 ps of Langevin MD of H2O2 with the
Q-Force teacher (0.5 fs steps, 300 K, friction 2/ps), printing energies every 100 fs.

    .venv/bin/python examples/teacher_md.py
"""

import numpy as np
from ase import units
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import thermalize_momenta

from ffpt_ase import QForceCalculator
from ffpt_ase.forcefields.qforce import QForceParameters

atoms = QForceParameters.load().reference("H2O2")
atoms.calc = QForceCalculator()
thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(0))
dyn = Langevin(atoms, timestep=0.5 * units.fs, temperature_K=300,
               friction=2.0 / (1000 * units.fs), fixcm=False, rng=np.random.default_rng(1))


def report():
    epot = atoms.get_potential_energy()
    ekin = atoms.get_kinetic_energy()
    print(f"t = {dyn.get_time() / units.fs:7.1f} fs  Epot = {epot:8.4f} eV  "
          f"T = {ekin / (1.5 * units.kB * len(atoms)):6.1f} K")


dyn.attach(report, interval=200)
dyn.run(2000)
