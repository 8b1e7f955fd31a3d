"""The labelled-frame container and its on-disk format.

On disk a :class:`Frames` set is one ``.npz`` file (``numpy.savez``, no pickles) with arrays

=============  ========================  ==================================================
key            shape                     meaning
=============  ========================  ==================================================
``positions``  (frames, atoms, 3)        Cartesian coordinates in Angstrom
``numbers``    (atoms,) or               atomic numbers; 0 marks padding when frames have
               (frames, atoms)           different atom counts (padding rows are ignored)
``energy``     (frames,)                 total energy in eV (optional)
``forces``     (frames, atoms, 3)        forces in eV/Angstrom (optional)
``stress``     (frames, 3, 3)            stress in eV/Angstrom^3, ASE's sign convention
                                         (sigma = (1/V) dE/d(strain); optional, periodic)
``cell``       (frames, 3, 3)            cell vectors (rows) in Angstrom; zeros if none
``pbc``        (3,)                      periodic directions
``time``       (frames,)                 time index of trajectory frames (optional; unit in
                                         metadata ``time_unit``, e.g. ``fs`` or ``step``)
``extra__X``   (frames, ...)             any per-frame array X (e.g. ``extra__reaction``)
``metadata``   () string                 JSON provenance: teacher, sigma, seed, source, ...
=============  ========================  ==================================================

Loading 100k small-molecule frames is a single ``np.load``; no per-frame objects are built
unless :meth:`Frames.to_atoms` is called.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from ..files import atomic_path

FORMAT_VERSION = 1


def label_sources(metadata: dict) -> set:
    """Label sources recorded in frame metadata: {'qforce'}, {'ab initio'}, ...

    Frames made by the sampler record their teacher; anything else counts as ab initio.
    Concatenated sets report the sources of all their parts.
    """
    if "concatenated_from" in metadata:
        return set().union(*(label_sources(m) for m in metadata["concatenated_from"]))
    return {metadata.get("teacher", "ab initio")}



#: the per-frame quantities :meth:`Frames.sketch` summarises
SKETCHED = ("energy", "positions", "forces", "cell", "stress", "time")


def _sketch_weights(n: int) -> np.ndarray:
    """The fixed weights (n,) of :meth:`Frames.sketch` (the same on every machine)."""
    return np.random.default_rng(20261202).standard_normal(n)


def sketch_difference(old: dict, frames: "Frames") -> float | str:
    """How far ``frames`` are from the set an old :meth:`Frames.sketch` summarised: the
    largest difference of a frame's projection relative to its scale (the sum of |value| x
    |weight| in ``frames``, at least 1e-12 of the largest), or a sentence when the sets
    differ in shape, atoms, periodicity or in which labels they hold (no rounding explains
    that)."""
    old = {k: np.asarray(v) for k, v in old.items()}
    new = frames.sketch()
    if set(old) != set(new):
        return f"other labels ({', '.join(sorted(set(old) ^ set(new)))})"
    if not np.array_equal(old["shape"], new["shape"]):
        return f"another shape ({tuple(old['shape'])} -> {tuple(new['shape'])})"
    if str(old["atoms"]) != str(new["atoms"]):
        return "other atoms or periodicity"
    worst = 0.0
    for name, value in frames._sketched():
        scale = np.abs(value) @ np.abs(_sketch_weights(value.shape[1]))
        scale = np.maximum(scale, 1e-12 * scale.max(initial=0.0) + np.finfo(float).tiny)
        worst = max(worst, float(np.max(np.abs(old[name] - new[name]) / scale, initial=0.0)))
    return worst


class DataFormatError(ValueError):
    """A data file is malformed or not in the expected format."""


#: where labels of extended-XYZ and other ASE frames are looked for, in this order (ASE's
#: own names, MACE's reference keys, common DFT-set names)
ENERGY_KEYS = ("energy", "REF_energy", "dft_energy", "DFT_energy", "total_energy")
#: ``Atoms.info`` keys that carry a frame set's provenance through extended XYZ / ASE files
PROVENANCE_KEYS = {"label_sources": "ffpt_label_sources", "source": "ffpt_source"}
FORCES_KEYS = ("forces", "REF_forces", "dft_forces", "DFT_forces", "force")
#: stress labels in ``Atoms.info`` (eV/A^3, 3x3, 9 or Voigt 6 values), or virials (eV, as
#: MACE's ``REF_virials`` and DeePMD's ``virial``: W = -V sigma)
STRESS_KEYS = ("stress", "REF_stress", "dft_stress", "DFT_stress")
VIRIAL_KEYS = ("virial", "virials", "REF_virial", "REF_virials")


def stress_matrix(value, what: str = "stress") -> np.ndarray:
    """A 3x3 stress from 3x3, 9 or Voigt 6 values (xx yy zz yz xz xy, ASE's order)."""
    v = np.asarray(value, float).reshape(-1)
    if v.size == 9:
        return v.reshape(3, 3)
    if v.size == 6:
        xx, yy, zz, yz, xz, xy = v
        return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    raise DataFormatError(f"{what} must have 9 or 6 (Voigt) components, got {v.size}")


def stress_from_virial(virial, cell, what: str = "a virial") -> np.ndarray:
    """sigma = -W / V (eV/A^3) of virials W (..., 3, 3) in eV and their cells (..., 3, 3)
    in A; a cell without volume is a :class:`DataFormatError` naming ``what``."""
    volume = np.abs(np.linalg.det(np.asarray(cell, float)))
    if np.any(volume < 1e-9):
        raise DataFormatError(f"{what} needs a cell with a volume")
    return -np.asarray(virial, float) / volume[..., None, None]


def _stress_value(value, key: str, atoms, where: str) -> np.ndarray:
    """The 3x3 stress (eV/A^3) of a label found under ``key``: a stress as it is, a virial
    (one of :data:`VIRIAL_KEYS`) converted by :func:`stress_from_virial`."""
    stress = stress_matrix(value, f"{where}: {key}")
    if key in VIRIAL_KEYS:
        stress = stress_from_virial(stress, atoms.cell.array, f"{where}: a virial ({key})")
    return stress


@contextmanager
def open_npz(path: str | Path):
    """``np.load`` of an ``.npz`` archive (no pickles) as a context: a file that is no
    archive, a truncated or corrupted one gives a :class:`DataFormatError` naming it,
    whether the damage shows on opening or on reading an array."""
    import zipfile
    import zlib
    try:
        with np.load(Path(path), allow_pickle=False) as data:
            yield data
    except DataFormatError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise DataFormatError(f"{path}: not a readable .npz file, or a damaged one "
                              f"({type(err).__name__}: {err})") from err


@dataclass
class Frames:
    """A set of labelled frames (see the module docstring for units and shapes)."""

    positions: np.ndarray
    numbers: np.ndarray
    energy: np.ndarray | None = None
    forces: np.ndarray | None = None
    cell: np.ndarray | None = None
    pbc: np.ndarray = field(default_factory=lambda: np.zeros(3, bool))
    time: np.ndarray | None = None
    stress: np.ndarray | None = None
    extras: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        self.positions = np.asarray(self.positions, float)
        self.numbers = np.asarray(self.numbers, int)
        if self.energy is not None:
            self.energy = np.asarray(self.energy, float).reshape(-1)
        if self.forces is not None:
            self.forces = np.asarray(self.forces, float)
        if self.cell is None:
            self.cell = np.zeros((len(self.positions), 3, 3))
        else:
            self.cell = np.asarray(self.cell, float)
            if self.cell.shape == (3, 3):
                self.cell = np.broadcast_to(self.cell, (len(self.positions), 3, 3)).copy()
        self.pbc = np.asarray(self.pbc, bool).reshape(3)
        if self.time is not None:
            self.time = np.asarray(self.time, float).reshape(-1)
        if self.stress is not None:
            self.stress = np.asarray(self.stress, float)
            if self.stress.ndim == 2 and self.stress.shape[1] in (6, 9):
                self.stress = np.stack([stress_matrix(v) for v in self.stress]) \
                    if len(self.stress) else np.zeros((0, 3, 3))
        self.validate()

    # -- shape checks ---------------------------------------------------------------------
    def validate(self, where: str = "frames") -> None:
        """Raise :class:`DataFormatError` if shapes disagree."""
        p = self.positions
        if p.ndim != 3 or p.shape[-1] != 3:
            raise DataFormatError(f"{where}: positions must be (frames, atoms, 3), got {p.shape}")
        nf, na = p.shape[:2]
        if self.numbers.shape not in ((na,), (nf, na)):
            raise DataFormatError(f"{where}: numbers must be ({na},) or ({nf}, {na}), "
                                  f"got {self.numbers.shape}")
        if self.energy is not None and self.energy.shape != (nf,):
            raise DataFormatError(f"{where}: energy must be ({nf},), got {self.energy.shape}")
        if self.forces is not None and self.forces.shape != p.shape:
            raise DataFormatError(f"{where}: forces must be {p.shape}, got {self.forces.shape}")
        if self.cell.shape != (nf, 3, 3):
            raise DataFormatError(f"{where}: cell must be ({nf}, 3, 3), got {self.cell.shape}")
        if self.time is not None and self.time.shape != (nf,):
            raise DataFormatError(f"{where}: time must be ({nf},), got {self.time.shape}")
        if self.stress is not None and self.stress.shape != (nf, 3, 3):
            raise DataFormatError(f"{where}: stress must be ({nf}, 3, 3), got "
                                  f"{self.stress.shape}")
        for k, v in self.extras.items():
            if len(v) != nf:
                raise DataFormatError(f"{where}: extra array {k!r} has {len(v)} rows, not {nf}")
        if (self.numbers < 0).any() or (self.numbers > 118).any():
            raise DataFormatError(f"{where}: atomic numbers outside 0..118")

    # -- basic properties -----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.positions)

    @property
    def numbers_per_frame(self) -> np.ndarray:
        """Atomic numbers as (frames, atoms) (0 = padding)."""
        if self.numbers.ndim == 1:
            return np.broadcast_to(self.numbers, self.positions.shape[:2])
        return self.numbers

    @property
    def n_atoms(self) -> np.ndarray:
        """Number of real (non-padding) atoms in each frame."""
        return (self.numbers_per_frame > 0).sum(axis=1)

    @property
    def elements(self) -> np.ndarray:
        """Sorted atomic numbers present (padding excluded)."""
        z = np.unique(self.numbers)
        return z[z > 0]

    def __getitem__(self, index) -> "Frames":
        """Subset of frames (int, slice, index array or boolean mask)."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        pick = lambda a: None if a is None else a[index]  # noqa: E731
        return Frames(
            positions=self.positions[index],
            numbers=self.numbers if self.numbers.ndim == 1 else self.numbers[index],
            energy=pick(self.energy), forces=pick(self.forces), cell=self.cell[index],
            pbc=self.pbc, time=pick(self.time), stress=pick(self.stress),
            extras={k: v[index] for k, v in self.extras.items()},
            metadata=dict(self.metadata))

    def consecutive_pairs(self) -> np.ndarray:
        """Mask (frames - 1,): frame t and t + 1 are one time step apart (``time`` differs by
        exactly 1) and hold the same atoms in the same order. The pairs of time-ordered data
        that the temporal-pair loss trains on and energy-change errors are scored on."""
        if self.time is None:
            raise ValueError("consecutive frames need time-ordered data (a 'time' array), e.g. "
                             "AIMD trajectories; this data set has none")
        num = self.numbers_per_frame
        same = (num[1:] == num[:-1]).all(axis=1)
        return (np.abs(np.diff(self.time) - 1.0) < 1e-9) & same

    def nonfinite_frames(self) -> np.ndarray:
        """Indices of frames with a non-finite position, energy or force."""
        bad = ~np.isfinite(self.positions).all(axis=(1, 2))
        if self.energy is not None:
            bad |= ~np.isfinite(self.energy)
        if self.forces is not None:
            bad |= ~np.isfinite(self.forces).all(axis=(1, 2))
        if self.stress is not None:
            bad |= ~np.isfinite(self.stress).all(axis=(1, 2))
        return np.nonzero(bad)[0]

    # -- conversion -----------------------------------------------------------------------
    def to_atoms(self, index: int) -> Atoms:
        """One frame as ASE Atoms (padding removed), labels attached as a single point."""
        z = self.numbers_per_frame[index]
        real = z > 0
        atoms = Atoms(numbers=z[real], positions=self.positions[index][real],
                      cell=self.cell[index], pbc=self.pbc)
        if self.energy is not None or self.forces is not None or self.stress is not None:
            from ase.stress import full_3x3_to_voigt_6_stress
            atoms.calc = SinglePointCalculator(
                atoms,
                energy=None if self.energy is None else float(self.energy[index]),
                forces=None if self.forces is None else self.forces[index][real],
                stress=None if self.stress is None else
                full_3x3_to_voigt_6_stress(self.stress[index]))
        return atoms

    def to_atoms_list(self) -> list:
        return [self.to_atoms(i) for i in range(len(self))]

    @classmethod
    def from_atoms_list(cls, images, metadata=None, energy_key: str | None = None,
                        forces_key: str | None = None,
                        stress_key: str | None = None) -> "Frames":
        """Build from ASE Atoms; energies/forces/stresses from an attached calculator, or
        from ``info``/``arrays`` under the first of :data:`ENERGY_KEYS` /
        :data:`FORCES_KEYS` / :data:`STRESS_KEYS` (or a virial under :data:`VIRIAL_KEYS`)
        found (ASE's ``energy``/``forces``/``stress``, MACE's ``REF_*``, ...), or only under
        ``energy_key`` / ``forces_key`` / ``stress_key`` when given (every frame must have
        them). The keys used are recorded in ``metadata['label_keys']``; provenance written
        by :meth:`to_atoms` (label sources, source) is read back into the metadata."""
        images = list(images)
        if not images:
            raise DataFormatError("no frames given")
        if energy_key or forces_key or stress_key:
            images = [_relabel(a, k, energy_key, forces_key, stress_key)
                      for k, a in enumerate(images)]
        n_max = max(len(a) for a in images)
        nf = len(images)
        pos = np.zeros((nf, n_max, 3))
        num = np.zeros((nf, n_max), int)
        energy = np.full(nf, np.nan)
        forces = np.full((nf, n_max, 3), np.nan)
        cell = np.zeros((nf, 3, 3))
        stress = np.full((nf, 3, 3), np.nan)
        have_e = have_f = False
        used = {}
        for i, a in enumerate(images):
            n = len(a)
            pos[i, :n] = a.positions
            num[i, :n] = a.numbers
            cell[i] = a.cell.array
            e_key = next((k for k in ENERGY_KEYS if k in a.info), None)
            f_key = next((k for k in FORCES_KEYS if k in a.arrays), None)
            e = a.info[e_key] if e_key else None
            f = a.arrays[f_key] if f_key else None
            if a.calc is not None and ("energy" in a.calc.results
                                       or "forces" in a.calc.results):
                res = a.calc.results
                e_key, f_key = ("energy" if "energy" in res else e_key,
                                "forces" if "forces" in res else f_key)
                e = res.get("energy", e)
                f = res.get("forces", f)
            s, s_key = _stress_label(a, i)
            if s is not None:
                stress[i] = s
            for kind, key in (("energy", e_key), ("forces", f_key), ("stress", s_key)):
                if key:
                    used.setdefault(kind, set()).add(key)
            if e is not None:
                energy[i] = e
                have_e = True
            if f is not None:
                forces[i, :n] = f
                forces[i, n:] = 0.0
                have_f = True
        if have_e and np.isnan(energy).any():
            raise DataFormatError(f"energy missing in frames {np.nonzero(np.isnan(energy))[0][:10]}")
        have_s = "stress" in used
        if have_s and np.isnan(stress).any():
            raise DataFormatError(f"stress missing in frames "
                                  f"{np.nonzero(np.isnan(stress).any(axis=(1, 2)))[0][:10]}")
        same = (num == num[0]).all()
        metadata = dict(metadata or {})
        metadata["label_keys"] = {k: sorted(v) for k, v in used.items()}
        metadata.update(_provenance(images))
        for kind, key in (("energy", energy_key), ("forces", forces_key),
                          ("stress", stress_key)):
            if key:
                metadata["label_keys"][kind] = [key]
        return cls(positions=pos, numbers=num[0] if same else num,
                   energy=energy if have_e else None, forces=forces if have_f else None,
                   stress=stress if have_s else None, cell=cell, pbc=images[0].pbc,
                   metadata=metadata)

    @classmethod
    def concatenate(cls, parts) -> "Frames":
        """Join frame sets (atom counts may differ: shorter frames are zero-padded). A set has
        one periodicity, so sets of different ``pbc`` are refused (the joined frames would
        lose or gain periodic images); put molecules into a periodic cell first
        (``sampling.molecule_copies(frames, 1, cell)``)."""
        parts = list(parts)
        if any((p.pbc != parts[0].pbc).any() for p in parts):
            raise ValueError("cannot join frame sets of different periodicity ("
                             + ", ".join(str(p.pbc.astype(int).tolist()) for p in parts)
                             + "): put the molecules into a periodic cell first, e.g. "
                               "sampling.molecule_copies(frames, 1, cell)")
        n_max = max(p.positions.shape[1] for p in parts)

        def pad(a, fill=0.0):
            w = n_max - a.shape[1]
            return a if w == 0 else np.concatenate(
                [a, np.full((a.shape[0], w) + a.shape[2:], fill, a.dtype)], axis=1)

        nums = [pad(np.array(p.numbers_per_frame), 0) for p in parts]
        num = np.concatenate(nums)
        same = (num == num[0]).all()
        has = lambda name: all(getattr(p, name) is not None for p in parts)  # noqa: E731
        keys = set.intersection(*(set(p.extras) for p in parts))
        return cls(
            positions=np.concatenate([pad(p.positions) for p in parts]),
            numbers=num[0] if same else num,
            energy=np.concatenate([p.energy for p in parts]) if has("energy") else None,
            forces=np.concatenate([pad(p.forces) for p in parts]) if has("forces") else None,
            cell=np.concatenate([p.cell for p in parts]), pbc=parts[0].pbc,
            time=np.concatenate([p.time for p in parts]) if has("time") else None,
            stress=np.concatenate([p.stress for p in parts]) if has("stress") else None,
            extras={k: np.concatenate([p.extras[k] for p in parts]) for k in keys},
            metadata={"concatenated_from": [p.metadata for p in parts]})

    # -- disk -----------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """``sha256:...`` of the frames' content (atoms, positions, cells, labels, times),
        the same however and whenever the file was written."""
        from ..runfolder import bytes_digest
        parts = [np.ascontiguousarray(a).tobytes() for a in
                 (self.numbers, self.positions, self.cell, self.pbc)]
        for name in ("energy", "forces", "time"):
            value = getattr(self, name)
            parts.append(b"" if value is None else np.ascontiguousarray(value).tobytes())
        if self.stress is not None:   # (absent: the digest of sets from before stresses)
            parts += [b"stress", np.ascontiguousarray(self.stress).tobytes()]
        return bytes_digest(*parts)

    def sketch(self) -> dict:
        """A compact numerical summary of the frames, to tell a set regenerated on another
        machine (equal up to floating-point rounding: another CPU's vectorised ``exp`` or
        ``erfc`` changes the last bits of a label, and so :meth:`fingerprint`) from a
        different one (:func:`sketch_difference`): the digest of the atoms and periodicity
        (exact), and per frame the energy, and the projections of positions, forces, cell,
        stress and time onto fixed pseudo-random weights: one float per frame and quantity."""
        from ..runfolder import bytes_digest
        out = {"shape": np.array(self.positions.shape),
               "atoms": np.array(bytes_digest(np.ascontiguousarray(self.numbers).tobytes(),
                                              np.ascontiguousarray(self.pbc).tobytes()))}
        for name, value in self._sketched():
            out[name] = value @ _sketch_weights(value.shape[1])
        return out

    def _sketched(self):
        """``(name, (frames, values) array)`` of each quantity :meth:`sketch` summarises."""
        for name in SKETCHED:
            value = getattr(self, name)
            if value is not None:
                yield name, np.asarray(value, float).reshape(len(self), -1)

    def save(self, path: str | Path) -> Path:
        """Write the ``.npz`` format described in the module docstring."""
        path = Path(path)
        arrays = {"positions": self.positions, "numbers": self.numbers, "cell": self.cell,
                  "pbc": self.pbc, "format_version": np.array(FORMAT_VERSION),
                  "metadata": np.array(json.dumps(self.metadata, default=str))}
        for name in ("energy", "forces", "time", "stress"):
            if getattr(self, name) is not None:
                arrays[name] = getattr(self, name)
        for k, v in self.extras.items():
            arrays[f"extra__{k}"] = np.asarray(v)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, ".tmp.npz") as tmp:   # np.savez appends .npz otherwise
            np.savez(tmp, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Frames":
        """Read a file written by :meth:`save` (raises DataFormatError if malformed)."""
        path = Path(path)
        with open_npz(path) as data:
            missing = {"positions", "numbers"} - set(data.files)
            if missing:
                raise DataFormatError(f"{path}: not an ffpt-ase frame file, missing arrays "
                                      f"{sorted(missing)} (found {data.files})")
            get = lambda k: data[k] if k in data.files else None  # noqa: E731
            try:
                meta = json.loads(str(data["metadata"])) if "metadata" in data.files else {}
            except json.JSONDecodeError as err:
                raise DataFormatError(f"{path}: metadata is not valid JSON ({err})") from err
            return cls(
                positions=data["positions"], numbers=data["numbers"], energy=get("energy"),
                forces=get("forces"), cell=get("cell"),
                pbc=get("pbc") if "pbc" in data.files else np.zeros(3, bool),
                time=get("time"), stress=get("stress"),
                extras={k[7:]: data[k] for k in data.files if k.startswith("extra__")},
                metadata=meta)

    def summary(self) -> str:
        """Human-readable description (what ``ffpt-ase data info`` prints)."""
        from ase.data import chemical_symbols
        n = self.n_atoms
        lines = [f"frames: {len(self)}",
                 f"atoms per frame: {n.min()}" + (f"..{n.max()}" if n.max() != n.min() else ""),
                 "elements: " + " ".join(chemical_symbols[z] for z in self.elements),
                 f"periodic: {self.pbc.tolist()}"]
        keys = self.metadata.get("label_keys")
        if self.energy is None and self.forces is None:
            lines.append("WARNING: no energy or force labels found"
                         + (f" (looked for {', '.join(ENERGY_KEYS)} and "
                            f"{', '.join(FORCES_KEYS)})" if keys is not None else ""))
        elif keys:
            lines.append("labels from: " + ", ".join(f"{k} <- {'/'.join(v)}"
                                                     for k, v in keys.items()))
        if self.energy is not None:
            lines.append(f"energy [eV]: min {self.energy.min():.4f}  max {self.energy.max():.4f}"
                         f"  mean {self.energy.mean():.4f}")
        if self.forces is not None:
            real = self.numbers_per_frame > 0
            fn = np.linalg.norm(self.forces, axis=-1)[real]
            lines.append(f"|force| [eV/A]: mean {fn.mean():.4f}  max {fn.max():.4f}")
        if self.stress is not None:
            p = -np.trace(self.stress, axis1=1, axis2=2) / 3.0
            lines.append(f"stress [eV/A^3]: pressure -tr/3 min {p.min():.5f}  max "
                         f"{p.max():.5f} ({p.mean() * 160.21766:.3f} GPa on average)")
        if self.time is not None:
            lines.append(f"time: {self.time[0]:g} .. {self.time[-1]:g} "
                         f"{self.metadata.get('time_unit', '')}")
        if self.extras:
            lines.append("extra arrays: " + ", ".join(sorted(self.extras)))
        bad = self.nonfinite_frames()
        if len(bad):
            lines.append(f"WARNING: {len(bad)} frames with non-finite values")
        if self.metadata:
            lines.append("metadata: " + json.dumps(self.metadata, default=str)[:800])
        return "\n".join(lines)


def _stress_label(atoms, index: int):
    """``(3x3 stress in eV/A^3, key)`` of a frame, or ``(None, None)``: the calculator's
    stress, else the first of :data:`STRESS_KEYS`, else a virial (eV) of
    :data:`VIRIAL_KEYS` divided by -V."""
    res = atoms.calc.results if atoms.calc is not None else {}
    if "stress" in res:
        return stress_matrix(res["stress"], f"frame {index}: stress"), "stress"
    key = next((k for k in STRESS_KEYS + VIRIAL_KEYS if k in atoms.info), None)
    if key:
        return _stress_value(atoms.info[key], key, atoms, f"frame {index}"), key
    return None, None


def _relabel(atoms, k: int, energy_key: str | None, forces_key: str | None,
             stress_key: str | None = None):
    """A copy of ``atoms`` labelled by the user's keys: a kind with a key given takes its
    label only from there (ASE's reader may have put ``energy``/``forces``/``stress`` on a
    single-point calculator: those count too), a kind without keeps the calculator's
    label. A stress key naming a virial (:data:`VIRIAL_KEYS`) is converted to a stress."""
    from ase.calculators.singlepoint import SinglePointCalculator
    results = dict(atoms.calc.results) if atoms.calc is not None else {}
    out = atoms.copy()
    labels = {}
    for kind, key, known, table in (("energy", energy_key, ENERGY_KEYS, atoms.info),
                                    ("forces", forces_key, FORCES_KEYS, atoms.arrays),
                                    ("stress", stress_key, STRESS_KEYS + VIRIAL_KEYS,
                                     atoms.info)):
        if not key:
            if kind in results:
                labels[kind] = results[kind]
            continue
        for other in known:   # no fallback to another key of this kind
            (out.arrays if kind == "forces" else out.info).pop(other, None)
        value = table.get(key, results.get(key) if key == kind else None)
        if value is None:
            raise DataFormatError(f"frame {k} has no {kind} under the key {key!r} (it has "
                                  f"info keys {sorted(atoms.info)[:8]} and array keys "
                                  f"{sorted(atoms.arrays)[:8]})")
        if kind == "stress":
            from ase.stress import full_3x3_to_voigt_6_stress
            value = full_3x3_to_voigt_6_stress(_stress_value(value, key, atoms, f"frame {k}"))
        labels[kind] = value
    if labels:
        out.calc = SinglePointCalculator(out, **labels)
    return out


def _provenance(images) -> dict:
    """Frame-set metadata from the provenance keys of images written by ffpt-ase: one label
    source gives ``teacher`` (or none: ab initio); several give ``concatenated_from`` so the
    fidelity check sees the mixture."""
    key_sources, key_source = PROVENANCE_KEYS["label_sources"], PROVENANCE_KEYS["source"]
    tagged = [a for a in images if key_sources in a.info]
    if not tagged:
        return {}
    sources = set()
    for a in images:   # an untagged frame counts as ab initio
        sources |= set(str(a.info.get(key_sources, "ab initio")).split(","))
    out = {"written_source": sorted({str(a.info[key_source]) for a in tagged
                                     if key_source in a.info})}
    if len(sources) == 1:
        (only,) = sources
        if only != "ab initio":
            out["teacher"] = only
    else:
        out["concatenated_from"] = [{"teacher": s} if s != "ab initio" else {}
                                    for s in sorted(sources)]
    return out
