"""Readers that turn external data sets into :class:`~ffpt_ase.data.frames.Frames`.

Every reader converts units once, here, to eV and Angstrom:

* :func:`read_combustion_npz` - hydrogen-combustion benchmark (Guan et al., Sci. Data 9, 215
  (2022)): keys ``R`` (A), ``Z``, ``N``, ``E`` (kcal/mol, relative to isolated atoms),
  ``F`` (kcal/mol/A), ``RXN``; zero padding is stripped to the largest real atom count.
  AIMD files hold many short trajectories one after another; a new one is recognised where
  some atom moves more than max(0.1 A, 5 x the file's median) between consecutive frames,
  and the ``time`` index skips a step there, so temporal pairs never join two trajectories.
* :func:`read_extxyz` - extended XYZ (e.g. the MD17 CCSD(T) aspirin files; eV and eV/A).
* :func:`read_deepmd` - DeePMD raw folders (``type.raw``, ``type_map.raw``,
  ``set.*/{coord,force,energy,box}.npy``; A, eV, eV/A); fully periodic.
* :func:`read_ase_trajectory` - ASE ``.traj`` files (energies/forces from the stored calc).

:func:`read_frames` picks the reader from the path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import units
from ase.data import atomic_numbers

from .frames import DataFormatError, Frames, open_npz, stress_from_virial

_KCAL = units.kcal / units.mol  # eV per kcal/mol
BREAK_MIN_A = 0.1
BREAK_FACTOR = 5.0


def trajectory_time(positions: np.ndarray) -> np.ndarray:
    """Step index of concatenated trajectories (frames, atoms, 3; A): consecutive within a
    trajectory, with a gap of one where the largest atomic displacement between neighbouring
    frames exceeds max(BREAK_MIN_A, BREAK_FACTOR x its median), i.e. a new trajectory."""
    n = len(positions)
    if n < 2:
        return np.arange(n, dtype=float)
    step = np.abs(np.diff(positions, axis=0)).max(axis=(1, 2))
    breaks = step > max(BREAK_MIN_A, BREAK_FACTOR * float(np.median(step)))
    return np.arange(n, dtype=float) + np.concatenate([[0], np.cumsum(breaks)])


def read_combustion_npz(path: str | Path, time_ordered: bool | None = None) -> Frames:
    """Read one hydrogen-combustion npz file (see module doc).

    AIMD files (name contains ``aimd``) are time ordered; their frames get a ``time`` index in
    MD steps (the step length is not stored in the files). ``time_ordered`` overrides the
    guess from the file name.
    """
    path = Path(path)
    with open_npz(path) as data:
        missing = {"R", "Z", "N", "E", "F"} - set(data.files)
        if missing:
            raise DataFormatError(f"{path}: not a combustion data file, missing keys "
                                  f"{sorted(missing)} (found {data.files})")
        R, Z, N, E, F = (data[k] for k in ("R", "Z", "N", "E", "F"))
        rxn = data["RXN"].reshape(-1).astype(str) if "RXN" in data.files else None
    nf = len(R)
    N = N.reshape(-1).astype(int)
    if R.shape[:2] != Z.shape or R.shape != F.shape or len(E) != nf or len(N) != nf:
        raise DataFormatError(f"{path}: inconsistent shapes R{R.shape} Z{Z.shape} "
                              f"F{F.shape} E{E.shape} N{N.shape}")
    real = Z > 0
    if not np.array_equal(real.sum(axis=1), N):
        raise DataFormatError(f"{path}: atom counts N disagree with the nonzero entries of Z")
    n_max = int(N.max())
    if real[:, n_max:].any() or not (np.arange(R.shape[1])[None] < N[:, None]).__eq__(real).all():
        raise DataFormatError(f"{path}: padding is not at the end of each frame")
    Z = Z[:, :n_max].astype(int)
    same = (Z == Z[0]).all()
    extras = {"reaction": rxn} if rxn is not None else {}
    if time_ordered is None:
        time_ordered = "aimd" in path.name
    return Frames(
        positions=R[:, :n_max], numbers=Z[0] if same else Z,
        energy=E.reshape(-1) * _KCAL, forces=F[:, :n_max] * _KCAL,
        time=trajectory_time(R[:, :n_max]) if time_ordered else None, extras=extras,
        metadata={"source": str(path), "format": "h2combustion-npz",
                  "energy_reference": "isolated atoms (wB97X-V/cc-pVTZ)",
                  "converted": "kcal/mol -> eV", **({"time_unit": "step"} if time_ordered else {})})


def read_extxyz(path: str | Path, index=":", energy_key: str | None = None,
                forces_key: str | None = None, stress_key: str | None = None) -> Frames:
    """Extended XYZ via ASE (energies in eV, forces in eV/A as stored; labels under the
    given keys, else the first known key, see :meth:`Frames.from_atoms_list`)."""
    from ase.io import read

    path = Path(path)
    try:
        images = read(path, index=index)
    except Exception as err:  # ASE raises many types for malformed text
        raise DataFormatError(f"{path}: cannot be read as extended XYZ ({err})") from err
    if not isinstance(images, list):
        images = [images]
    return Frames.from_atoms_list(images, metadata={"source": str(path), "format": "extxyz"},
                                  energy_key=energy_key, forces_key=forces_key,
                                  stress_key=stress_key)


def _deepmd_system(folder: Path) -> Frames:
    try:
        types = np.loadtxt(folder / "type.raw", dtype=int).reshape(-1)
        type_map = (folder / "type_map.raw").read_text().split()
    except OSError as err:
        raise DataFormatError(f"{folder}: DeePMD folder needs type.raw and type_map.raw ({err})") from err
    try:
        numbers = np.array([atomic_numbers[type_map[t]] for t in types])
    except (IndexError, KeyError) as err:
        raise DataFormatError(f"{folder}: type.raw/type_map.raw do not map to elements ({err})") from err
    sets = sorted(folder.glob("set.*"))
    if not sets:
        raise DataFormatError(f"{folder}: no set.* subfolders")
    n = len(numbers)
    pos, frc, ene, box, vir = [], [], [], [], []
    for s in sets:
        try:
            c = np.load(s / "coord.npy")
            f = np.load(s / "force.npy")
            e = np.load(s / "energy.npy")
            b = np.load(s / "box.npy")
        except (OSError, ValueError, EOFError) as err:
            raise DataFormatError(f"{s}: missing, damaged or pickled coord/force/energy/box "
                                  f".npy ({err})") from err
        nf = len(c)
        if c.shape != (nf, 3 * n) or f.shape != (nf, 3 * n) or e.shape[0] != nf or b.shape != (nf, 9):
            raise DataFormatError(f"{s}: shapes coord{c.shape} force{f.shape} energy{e.shape} "
                                  f"box{b.shape} do not fit {n} atoms")
        pos.append(c.reshape(nf, n, 3))
        frc.append(f.reshape(nf, n, 3))
        ene.append(e.reshape(-1))
        box.append(b.reshape(nf, 3, 3))
        if (s / "virial.npy").exists():   # virial in eV: stress = -W / V
            try:
                w = np.load(s / "virial.npy").reshape(nf, 3, 3)
            except (OSError, ValueError, EOFError) as err:
                raise DataFormatError(f"{s}: damaged or misshaped virial.npy ({err})") from err
            vir.append(stress_from_virial(w, box[-1], f"{s}: virial.npy"))
    if vir and len(vir) != len(sets):
        raise DataFormatError(f"{folder}: virial.npy is in some set.* folders only")
    return Frames(positions=np.concatenate(pos), numbers=numbers, energy=np.concatenate(ene),
                  forces=np.concatenate(frc), cell=np.concatenate(box), pbc=[True] * 3,
                  stress=np.concatenate(vir) if vir else None,
                  metadata={"source": str(folder), "format": "deepmd-raw"})


def read_deepmd(path: str | Path) -> Frames:
    """A DeePMD raw folder, or a folder of such folders (all systems concatenated)."""
    path = Path(path)
    if (path / "type.raw").exists():
        return _deepmd_system(path)
    systems = sorted(p.parent for p in path.glob("*/type.raw"))
    if not systems:
        raise DataFormatError(f"{path}: no DeePMD system (type.raw) found")
    frames = Frames.concatenate([_deepmd_system(s) for s in systems])
    frames.metadata = {"source": str(path), "format": "deepmd-raw",
                       "systems": [s.name for s in systems]}
    return frames


def read_ase_trajectory(path: str | Path, energy_key: str | None = None,
                        forces_key: str | None = None, stress_key: str | None = None) -> Frames:
    """An ASE ``.traj`` file; energies/forces come from the calculator results stored (or
    the ``info``/``arrays`` keys given)."""
    from ase.io import Trajectory

    path = Path(path)
    try:
        with Trajectory(str(path)) as traj:
            images = list(traj)
    except Exception as err:
        raise DataFormatError(f"{path}: not a readable ASE trajectory ({err})") from err
    frames = Frames.from_atoms_list(images, metadata={"source": str(path), "format": "ase-traj"},
                                    energy_key=energy_key, forces_key=forces_key,
                                    stress_key=stress_key)
    frames.time = np.arange(len(frames), dtype=float)
    frames.metadata["time_unit"] = "frame"
    return frames


def read_frames(path: str | Path, energy_key: str | None = None,
                forces_key: str | None = None, stress_key: str | None = None) -> Frames:
    """Read any supported file or folder, choosing the reader from its name and content.
    ``energy_key``/``forces_key``/``stress_key``: where extended XYZ and ASE trajectory
    files keep their labels (default: the first of the known keys, ASE's and MACE's among
    them; a stress key may name a virial in eV)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {path}")
    keys = energy_key or forces_key or stress_key
    if keys and (path.is_dir() or path.suffix.lower() not in (".xyz", ".extxyz", ".traj")):
        raise DataFormatError(f"{path}: --energy-key/--forces-key/--stress-key name labels "
                              "of extended XYZ or ASE trajectory files; this format has "
                              "fixed labels")
    if path.is_dir():
        return read_deepmd(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        with open_npz(path) as data:
            keys = set(data.files)
        if {"positions", "numbers"} <= keys:
            return Frames.load(path)
        if {"R", "Z", "E"} <= keys:
            return read_combustion_npz(path)
        raise DataFormatError(f"{path}: unknown .npz layout (keys {sorted(keys)})")
    if suffix == ".traj":
        return read_ase_trajectory(path, energy_key, forces_key, stress_key)
    if suffix in (".xyz", ".extxyz"):
        return read_extxyz(path, energy_key=energy_key, forces_key=forces_key,
                           stress_key=stress_key)
    raise DataFormatError(f"{path}: unknown data format (use .npz, .xyz/.extxyz, .traj or a "
                          f"DeePMD folder)")


def write_frames(frames: Frames, path: str | Path) -> Path:
    """Write ``.npz`` (native format), ``.xyz``/``.extxyz`` or ``.traj`` by suffix."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return frames.save(path)
    from ase.io import write

    from .frames import PROVENANCE_KEYS, label_sources
    images = frames.to_atoms_list()
    provenance = {PROVENANCE_KEYS["label_sources"]: ",".join(sorted(label_sources(
        frames.metadata)))}
    if frames.metadata.get("source"):   # (an empty value would break the extxyz comment line)
        provenance[PROVENANCE_KEYS["source"]] = str(frames.metadata["source"])
    for atoms in images:   # the fidelity check holds after a round trip
        atoms.info.update(provenance)
    if suffix in (".xyz", ".extxyz"):
        write(path, images, format="extxyz")
    elif suffix == ".traj":
        write(path, images, format="traj")
    else:
        raise DataFormatError(f"cannot write {path}: use .npz, .xyz/.extxyz or .traj")
    return path
