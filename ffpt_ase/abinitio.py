"""Ab initio labels from PySCF as an ASE calculator (eV and eV/A at the boundary).

Used to parametrize the Q-Force teacher (relaxations, Hessians, torsion scans) and to label
small fine-tuning sets. PySCF works in Bohr and Hartree; conversion happens here, once.

The hydrogen-combustion reference data were computed at UKS wB97X-V/cc-pVTZ
(``xc='wb97x-v', basis='cc-pvtz'``, tens of seconds per gradient on two cores); the default
here is the much cheaper B3LYP/6-31G* (about a second per gradient for HO2).
"""

from __future__ import annotations

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator, all_changes

_BOHR = units.Bohr  # Angstrom per Bohr
_HARTREE = units.Hartree  # eV per Hartree


def _require_pyscf():
    try:
        import pyscf  # noqa: F401
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("PySCF is needed for ab initio labels: pip install 'ffpt-ase[abinitio]'"
                          " (or pip install pyscf)") from err


class PySCFCalculator(Calculator):
    """Kohn-Sham DFT energies and forces from PySCF.

    Parameters
    ----------
    xc, basis:
        Exchange-correlation functional and basis set in PySCF's spelling.
    multiplicity:
        Spin multiplicity 2S+1. Open shells run unrestricted (UKS); closed shells run RKS
        unless ``unrestricted=True``.
    charge:
        Total charge in e.
    """

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, xc: str = "b3lyp", basis: str = "6-31g*", multiplicity: int = 1,
                 charge: int = 0, unrestricted: bool | None = None, conv_tol: float = 1e-9,
                 max_memory_mb: int = 4000, **kwargs):
        _require_pyscf()
        super().__init__(xc=xc, basis=basis, multiplicity=int(multiplicity),
                         charge=int(charge), **kwargs)
        self.xc, self.basis = xc, basis
        self.multiplicity, self.charge = int(multiplicity), int(charge)
        self.unrestricted = self.multiplicity > 1 if unrestricted is None else unrestricted
        self.conv_tol = conv_tol
        self.max_memory_mb = max_memory_mb
        self._dm = None  # density matrix of the last geometry, reused as a guess
        self.mf = None

    def make_scf(self, atoms: Atoms):
        """Build a converged PySCF mean-field object for ``atoms`` (positions in A)."""
        from pyscf import dft, gto

        if not np.all(np.isfinite(atoms.positions)):
            raise ValueError("non-finite coordinates passed to PySCF")
        mol = gto.M(atom=[(s, p) for s, p in zip(atoms.get_chemical_symbols(), atoms.positions)],
                    unit="Angstrom", basis=self.basis, charge=self.charge,
                    spin=self.multiplicity - 1, verbose=0, max_memory=self.max_memory_mb)
        mf = dft.UKS(mol) if self.unrestricted else dft.RKS(mol)
        mf.xc = self.xc
        mf.conv_tol = self.conv_tol
        if self.xc.lower().endswith("-v"):
            mf.nlc = "vv10"
        dm0 = self._dm if (self._dm is not None and self.mf is not None
                           and self.mf.mol.natm == mol.natm) else None
        mf.kernel(dm0=dm0)
        if not mf.converged:
            raise RuntimeError(f"SCF did not converge for {atoms.get_chemical_formula()} "
                               f"({self.xc}/{self.basis}, multiplicity {self.multiplicity})")
        self._dm = mf.make_rdm1()
        self.mf = mf
        return mf

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        mf = self.make_scf(self.atoms)
        e = float(mf.e_tot) * _HARTREE
        self.results["energy"] = e
        self.results["free_energy"] = e
        if "forces" in properties:
            grad = mf.nuc_grad_method().kernel()
            self.results["forces"] = -np.asarray(grad) * _HARTREE / _BOHR

    def hessian(self, atoms: Atoms) -> np.ndarray:
        """Analytic Cartesian Hessian (3N, 3N) in eV/A^2 (not available for VV10 functionals)."""
        mf = self.make_scf(atoms)
        h = mf.Hessian().kernel()  # (N, N, 3, 3) in Hartree/Bohr^2
        n = len(atoms)
        return np.asarray(h).transpose(0, 2, 1, 3).reshape(3 * n, 3 * n) * _HARTREE / _BOHR**2


#: ground-state spin multiplicities of free atoms (Hund's rule)
ATOM_MULTIPLICITY = {"H": 2, "He": 1, "Li": 2, "Be": 1, "B": 2, "C": 3, "N": 4, "O": 3, "F": 2,
                     "Ne": 1, "Na": 2, "Mg": 1, "Al": 2, "Si": 3, "P": 4, "S": 3, "Cl": 2}


def free_atom_energies(symbols, xc: str = "b3lyp", basis: str = "6-31g*") -> dict:
    """Energies (eV) of the free atoms of ``symbols`` in their ground spin state, at one level
    of theory: the zero that puts ab initio labels on the Q-Force teacher's energy scale."""
    from ase import Atoms
    out = {}
    for el in sorted(set(symbols)):
        if el not in ATOM_MULTIPLICITY:
            raise ValueError(f"no ground-state multiplicity known for a free {el} atom")
        atom = Atoms(el, positions=[[0.0, 0.0, 0.0]])
        atom.calc = PySCFCalculator(xc=xc, basis=basis, multiplicity=ATOM_MULTIPLICITY[el])
        out[el] = float(atom.get_potential_energy())
    return out


def label_frames(images, calc: PySCFCalculator, checkpoint=None, show_progress: bool = True,
                 metadata: dict | None = None, atom_energies: dict | None = None):
    """Energies and forces of ``images`` (same atoms, any geometry) with PySCF.

    Each label costs seconds to minutes, so finished labels are saved to ``checkpoint``
    (an ``.npz`` frame file) as they come; a rerun with the same checkpoint continues where
    the last run stopped. Frames whose SCF does not converge are skipped and counted.
    With ``atom_energies`` (eV per element, e.g. from :func:`free_atom_energies`) the
    energies are relative to free atoms, the zero of the Q-Force teacher and of the
    combustion data set; the metadata says which zero the energies have.
    """
    from pathlib import Path

    from .data.frames import Frames
    from .progress import progress

    from .runfolder import atoms_digest, bytes_digest, describe_changes

    images = list(images)
    if not images:
        raise ValueError("no frames to label")
    done_pos, done_e, done_f, start = [], [], [], 0
    meta = {"teacher": "ab initio", "method": f"{calc.xc}/{calc.basis}",
            "code": "PySCF", "multiplicity": calc.multiplicity, "charge": calc.charge,
            **(metadata or {})}
    # what a checkpoint must match to be continued: the level of theory and the frames
    key = {"method": meta["method"], "multiplicity": calc.multiplicity, "charge": calc.charge,
           "frames": bytes_digest(*(atoms_digest(a).encode() for a in images))}
    ck = Path(checkpoint) if checkpoint else None
    if ck is not None and ck.exists():
        prev = Frames.load(ck)
        changes = describe_changes(prev.metadata.get("checkpoint_key", {}), key)
        if changes:
            raise ValueError(f"checkpoint {ck} holds labels of other frames or another level "
                             f"of theory ({'; '.join(changes)}); move it aside or use "
                             f"another checkpoint name")
        start = int(prev.metadata.get("next_index", len(prev)))
        done_pos, done_e, done_f = list(prev.positions), list(prev.energy), list(prev.forces)
    failed = 0
    with progress(total=len(images), initial=start, unit="frame", desc="PySCF labels",
                  disable=not show_progress) as bar:
        for k in range(start, len(images)):
            atoms = images[k].copy()
            atoms.calc = calc
            try:
                f = atoms.get_forces()
                e = atoms.get_potential_energy()
            except RuntimeError:  # SCF not converged
                failed += 1
            else:
                done_pos.append(atoms.positions.copy())
                done_e.append(e)
                done_f.append(f)
            bar.update(1)
            if ck is not None and done_pos:
                Frames(positions=np.array(done_pos), numbers=images[0].numbers,
                       energy=np.array(done_e), forces=np.array(done_f),
                       metadata={**meta, "next_index": k + 1, "scf_failures": failed,
                                 "checkpoint_key": key}).save(ck)
    if not done_pos:
        raise RuntimeError("no frame could be labelled (all SCF calculations failed)")
    meta.update(scf_failures=failed)
    energy = np.array(done_e)
    if atom_energies is not None:
        energy = energy - sum(atom_energies[el] for el in images[0].get_chemical_symbols())
        meta.update(energy_zero="free atoms at the same level",
                    free_atom_energies_eV=dict(atom_energies))
    else:
        meta.update(energy_zero="total energy")
    return Frames(positions=np.array(done_pos), numbers=images[0].numbers, energy=energy,
                  forces=np.array(done_f), metadata=meta)
