"""Common base of the classical teacher force fields.

Every teacher is an ASE calculator (energy in eV, forces in eV/A) *and* offers
:meth:`BatchForceField.evaluate_batch`, which labels many frames of the same molecule at
once: ``positions`` (frames, atoms, 3) in Angstrom -> energies (frames,) in eV and forces
(frames, atoms, 3) in eV/A. ``calculate()`` is that batch path with a single frame, so the
two can never disagree.
"""

from __future__ import annotations

import numpy as np
from ase.calculators.calculator import Calculator, all_changes


def check_positions(positions: np.ndarray, n_atoms: int | None = None) -> np.ndarray:
    """Return positions as a float64 (frames, atoms, 3) array or raise a clear ValueError."""
    pos = np.asarray(positions, dtype=float)
    if pos.ndim == 2:
        pos = pos[None]
    if pos.ndim != 3 or pos.shape[-1] != 3:
        raise ValueError(f"positions must have shape (frames, atoms, 3), got {pos.shape}")
    if n_atoms is not None and pos.shape[1] != n_atoms:
        raise ValueError(f"positions have {pos.shape[1]} atoms but the force field was set up "
                         f"for {n_atoms}")
    bad = ~np.isfinite(pos)
    if bad.any():
        frame, atom = np.argwhere(bad)[0][:2]
        raise ValueError(f"non-finite coordinates (NaN or inf) in frame {frame}, atom {atom}")
    return pos


class BatchForceField(Calculator):
    """ASE calculator whose work is done by a vectorized :meth:`evaluate_batch`.

    Subclasses set up their parameters for fixed ``numbers`` (the atoms of the system,
    in order) and implement ``_evaluate(positions) -> (energies, forces)`` on a validated
    float64 array.
    """

    implemented_properties = ["energy", "free_energy", "forces"]
    #: frames evaluated per vectorized chunk (bounds the memory of temporaries)
    chunk_size = 20000

    def __init__(self, numbers=None, **kwargs):
        super().__init__(**kwargs)
        self.numbers = None if numbers is None else np.asarray(numbers, int)
        self._bound = False

    # -- to be provided by subclasses -------------------------------------------------
    def _setup(self, atoms) -> None:
        """Bind the force field to the atoms of a system (called on first use)."""
        raise NotImplementedError

    def _evaluate(self, positions: np.ndarray):
        raise NotImplementedError

    # -- public API -----------------------------------------------------------------------
    def bind(self, atoms) -> None:
        """Set the force field up for ``atoms`` (topology from this geometry) if not done yet.

        Raises ValueError if it is already bound to a system with other atomic numbers.
        """
        numbers = atoms.get_atomic_numbers()
        if not self._bound:
            if self.numbers is not None and not np.array_equal(numbers, self.numbers):
                raise ValueError(f"atomic numbers {numbers.tolist()} do not match the system "
                                 f"this force field describes ({self.numbers.tolist()})")
            check_positions(atoms.positions)
            self._setup(atoms)
            self.numbers = numbers
            self._bound = True
        elif not np.array_equal(numbers, self.numbers):
            raise ValueError("atomic numbers differ from the system this force field was set "
                             "up for (its topology is fixed); create a new calculator")

    def evaluate_batch(self, positions, numbers=None):
        """Energies (frames,) in eV and forces (frames, atoms, 3) in eV/A for many frames.

        If the force field has not been bound to a system yet, pass ``numbers``: the
        topology is then perceived from the first frame (prefer :meth:`bind` with a
        reference geometry).
        """
        if numbers is not None:
            from ase import Atoms
            self.bind(Atoms(numbers=numbers, positions=check_positions(positions)[0]))
        if self.numbers is None:
            raise ValueError("force field not bound to a system: pass numbers= or call it "
                             "through an ase.Atoms object first")
        pos = check_positions(positions, len(self.numbers))
        energies = np.empty(len(pos))
        forces = np.empty_like(pos)
        for start in range(0, len(pos), self.chunk_size):
            sl = slice(start, start + self.chunk_size)
            energies[sl], forces[sl] = self._evaluate(pos[sl])
        return energies, forces

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.bind(self.atoms)
        e, f = self.evaluate_batch(self.atoms.positions[None])
        self.results["energy"] = float(e[0])
        self.results["free_energy"] = float(e[0])
        self.results["forces"] = f[0]
