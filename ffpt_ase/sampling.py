"""Rattled pre-training frames: relax with the teacher, rattle, label in batches.

Rattling follows the FFPT recipe: ``x~ = x0 + sigma * eps`` with ``eps ~ N(0, 1)`` drawn
independently for every Cartesian component of every atom, ``sigma = 0.2 A`` by default and
*not* rescaled, around a reference geometry ``x0`` relaxed with the teacher itself. Frames are
therefore uncorrelated.

Reproducibility: frames are drawn in fixed blocks of :data:`BLOCK` frames, block ``b`` from
``numpy.random.default_rng([seed, b])``. The same ``(seed, n)`` gives the same frames
whatever the batch size, and an interrupted run resumes from its last finished block.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms

from .data.frames import Frames
from .progress import progress
from .runfolder import calculator_digest, describe_changes

log = logging.getLogger(__name__)

#: frames per random block (fixed so that results do not depend on batch sizes)
BLOCK = 1000


def relax(atoms: Atoms, calc, fmax: float = 1e-4, steps: int = 2000) -> Atoms:
    """Minimize ``atoms`` with ``calc`` (BFGS) to max force ``fmax`` eV/A; returns a copy."""
    from ase.optimize import BFGS   # (imports scipy.optimize: 0.7 s no other command needs)
    work = atoms.copy()
    work.calc = calc
    if len(work) > 1:
        opt = BFGS(work, logfile=None)
        converged = opt.run(fmax=fmax, steps=steps)
        if not converged:
            fmax_now = np.linalg.norm(work.get_forces(), axis=1).max()
            raise RuntimeError(f"relaxation did not converge in {steps} steps "
                               f"(max force {fmax_now:.2e} eV/A)")
    out = work.copy()
    out.calc = None
    return out


@dataclass
class RattleSampler:
    """Draw and label rattled frames of one molecule.

    Parameters
    ----------
    teacher:
        A teacher calculator with ``evaluate_batch`` (any :class:`BatchForceField`).
    reference:
        The geometry to rattle around. Relaxed with the teacher first unless ``relax=False``.
    sigma:
        Standard deviation of the Gaussian displacement per Cartesian component, Angstrom.
    seed:
        Seed of the random stream (see module doc).
    """

    teacher: object
    reference: Atoms
    sigma: float = 0.2
    seed: int = 0
    relax: bool = True
    teacher_name: str = ""
    system_name: str = ""

    def __post_init__(self):
        if not np.isfinite(self.sigma) or self.sigma < 0:
            raise ValueError(f"sigma must be a finite non-negative length in A, got {self.sigma}")
        if not np.all(np.isfinite(self.reference.positions)):
            raise ValueError("reference geometry has non-finite coordinates")
        self.numbers = self.reference.get_atomic_numbers()
        if hasattr(self.teacher, "bind"):
            self.teacher.bind(self.reference)  # topology from the reference, never a rattled frame
        self.x0 = (relax(self.reference, self.teacher) if self.relax
                   else self.reference.copy()).positions

    def block_positions(self, block: int) -> np.ndarray:
        """Positions of random block ``block``: (BLOCK, atoms, 3) in Angstrom."""
        rng = np.random.default_rng([self.seed, block])
        eps = rng.standard_normal((BLOCK,) + self.x0.shape)
        return self.x0[None] + self.sigma * eps

    def metadata(self, n: int) -> dict:
        return {
            "kind": "rattled", "teacher": self.teacher_name or type(self.teacher).__name__,
            "teacher_source": str(getattr(getattr(self.teacher, "table", None), "source", "")
                                  or getattr(self.teacher, "system_file", "")),
            "teacher_fingerprint": calculator_digest(self.teacher),
            "system": self.system_name, "sigma_angstrom": self.sigma, "seed": self.seed,
            "n_requested": n, "block": BLOCK, "relaxed_reference": self.relax,
            "reference_positions_angstrom": self.x0.round(8).tolist(),
        }

    def sample(self, n: int, batch_size: int = 10000, show_progress: bool = True,
               checkpoint: str | Path | None = None) -> Frames:
        """Draw ``n`` frames and label them with the teacher.

        ``checkpoint``: a ``.npz`` path where finished blocks are saved every batch; if it
        exists and belongs to the same (system, teacher, sigma, seed) the run resumes from it.
        Frames whose labels are not finite are dropped and reported in the metadata
        (``dropped_nonfinite``) and in the log.
        """
        if n <= 0:
            raise ValueError("n must be a positive number of frames")
        n_blocks = -(-n // BLOCK)
        blocks_per_batch = max(1, batch_size // BLOCK)
        meta = self.metadata(n)
        done_pos, done_e, done_f, start = [], [], [], 0
        if checkpoint is not None and Path(checkpoint).exists():
            start, done_pos, done_e, done_f = self._resume(Path(checkpoint), meta)
        t0 = time.perf_counter()
        with progress(total=n_blocks * BLOCK, initial=start * BLOCK, unit="frame",
                      desc=f"rattle+label {self.system_name or ''}".strip(),
                      disable=not show_progress, unit_scale=True) as bar:
            for b0 in range(start, n_blocks, blocks_per_batch):
                blocks = range(b0, min(b0 + blocks_per_batch, n_blocks))
                pos = np.concatenate([self.block_positions(b) for b in blocks])
                e, f = self.teacher.evaluate_batch(pos)
                done_pos.append(pos)
                done_e.append(e)
                done_f.append(f)
                bar.update(len(pos))
                if checkpoint is not None:
                    self._save_checkpoint(Path(checkpoint), meta, blocks[-1] + 1,
                                          done_pos, done_e, done_f)
        elapsed = time.perf_counter() - t0
        pos = np.concatenate(done_pos)[:n]
        energy = np.concatenate(done_e)[:n]
        forces = np.concatenate(done_f)[:n]
        bad = ~(np.isfinite(energy) & np.isfinite(forces).all(axis=(1, 2)))
        meta["dropped_nonfinite"] = int(bad.sum())
        if bad.any():
            log.warning("%d of %d rattled frames had non-finite teacher labels and were "
                        "dropped (first indices %s)", bad.sum(), n, np.nonzero(bad)[0][:10].tolist())
        meta["frames_per_second"] = round((n - start * BLOCK) / max(elapsed, 1e-9), 1)
        return Frames(positions=pos[~bad], numbers=self.numbers, energy=energy[~bad],
                      forces=forces[~bad], metadata=meta)

    @staticmethod
    def _key(meta):
        return {k: meta.get(k) for k in ("teacher", "teacher_fingerprint", "system",
                                         "sigma_angstrom", "seed", "block",
                                         "reference_positions_angstrom")}

    def _save_checkpoint(self, path, meta, next_block, pos, e, f):
        Frames(positions=np.concatenate(pos), numbers=self.numbers, energy=np.concatenate(e),
               forces=np.concatenate(f),
               metadata={**meta, "checkpoint_next_block": next_block}).save(path)

    def _resume(self, path, meta):
        ck = Frames.load(path)
        changes = describe_changes(self._key(ck.metadata), self._key(meta))
        if changes:
            raise ValueError(f"checkpoint {path} belongs to another sampling run ("
                             f"{'; '.join(c[:120] for c in changes)}); rerun with the same "
                             f"settings, or use --start-over (moves the checkpoint aside)")
        start = int(ck.metadata["checkpoint_next_block"])
        log.info("resuming from %s: %d blocks already labelled", path, start)
        return start, [ck.positions], [ck.energy], [ck.forces]


def molecule_copies(frames: Frames, n_copies: int, cell, min_distance=2.0,
                    seed: int = 0, max_tries: int = 5000, teacher=None,
                    show_progress: bool = False) -> Frames:
    """Frames of ``n_copies`` molecules each, placed at random positions and orientations in
    the periodic ``cell`` (3x3 A, rows are cell vectors): without ``teacher``, labelled as the
    sum of their own labels (a gas of non-interacting copies of a single-molecule force
    field's frames); with ``teacher`` (an ASE calculator for the periodic system, e.g.
    :class:`~ffpt_ase.forcefields.tip3p.TIP3PLiquidCalculator`), labelled by it, so that the
    frames carry the intermolecular forces too, the repulsive walls of close contacts
    among them.

    Every ``n_copies`` consecutive frames of ``frames`` (one molecule, teacher-labelled)
    become one frame; each copy is rotated about its centroid (its forces with it) and
    shifted, and is placed again (up to ``max_tries`` times) until no atom of it is closer
    than ``min_distance`` (A, minimum image) to an atom of another copy; ``min_distance`` is
    one distance for all pairs or ``{(Z1, Z2): A}`` for each pair of elements (e.g. O-O
    2.4 A but O-H 1.5 A, as hydrogen bonds have them). The labels are
    exact for a teacher without intermolecular terms; what such frames add to pre-training
    is atom pairs at intermolecular distances, so the network's radial filters and neighbour
    sums meet the distances and neighbour counts of a condensed phase before fine-tuning does
    (a monomer alone has no pair beyond ~2 A); with ``teacher`` those pairs carry the
    teacher's intermolecular forces (energies: the teacher's, eV). ``show_progress``: a
    bar with rate and ETA over the frames placed, then over those the teacher labels.
    """
    from ase.geometry import find_mic
    from scipy.spatial.transform import Rotation

    if n_copies < 1 or len(frames) < n_copies:
        raise ValueError(f"need n_copies >= 1 and at least that many frames, got {n_copies} "
                         f"copies of {len(frames)} frames")
    if frames.energy is None or frames.forces is None:
        raise ValueError("the frames need teacher energies and forces")
    if frames.numbers.ndim != 1 or frames.pbc.any():
        raise ValueError("give frames of one molecule (fixed atoms, not periodic)")
    cell = np.asarray(cell, float).reshape(3, 3)
    inverse = np.linalg.inv(cell)
    rng = np.random.default_rng(seed)
    n_out = len(frames) // n_copies
    n_at = frames.positions.shape[1]
    z = np.asarray(frames.numbers)
    if isinstance(min_distance, dict):
        pairs = {tuple(sorted(map(int, k))): float(v) for k, v in min_distance.items()}
        missing = {tuple(sorted((int(a), int(b)))) for a in z for b in z} - set(pairs)
        if missing:
            raise ValueError(f"min_distance gives no distance for the element pairs "
                             f"{sorted(missing)}")
        # (atom of a copy, atom of another copy) -> the closest allowed distance
        limit = np.array([[pairs[tuple(sorted((int(a), int(b))))] for b in z] for a in z])
    else:
        limit = np.full((n_at, n_at), float(min_distance))
    pos = np.zeros((n_out, n_copies * n_at, 3))
    frc = np.zeros_like(pos)
    energy = np.zeros(n_out)
    bar = progress(total=n_out, unit="frame", desc=f"placing {n_copies} copies",
                   disable=not show_progress)
    for k in range(n_out):
        for c in range(n_copies):
            src = k * n_copies + c
            x = frames.positions[src] - frames.positions[src].mean(axis=0)
            others = pos[k, :c * n_at]
            tried, trials = 0, 16   # placements tried at once: doubled after each miss
            while tried < max_tries:
                trials = min(2 * trials, 1024, max_tries - tried)
                tried += trials
                rots = Rotation.random(trials, random_state=rng)
                cand = np.einsum("tij,aj->tai", rots.as_matrix(), x) \
                    + (rng.uniform(size=(trials, 3)) @ cell)[:, None, :]
                if c == 0:
                    pick = 0
                    break
                # nearest images through rounded fractional differences: a quick filter
                # (exact for orthorhombic cells), then the pick is checked exactly
                lim = np.tile(limit, (1, c))            # (atom of cand, atom of others)
                d = (cand[:, :, None, :] - others[None, None, :, :]) @ inverse
                d = (d - np.round(d)) @ cell
                fits = np.flatnonzero((np.sqrt((d * d).sum(-1)) >= lim).all(axis=(1, 2)))
                fits = [t for t in fits[:4] if (find_mic(
                    (cand[t][:, None] - others[None]).reshape(-1, 3), cell, pbc=True
                )[1].reshape(n_at, -1) >= lim).all()]
                if fits:
                    pick = fits[0]
                    break
            else:   # (the while loop ran out of tries)
                raise ValueError(f"could not place {n_copies} copies {min_distance} A apart in "
                                 f"the cell within {max_tries} tries each: use a larger cell, "
                                 f"fewer copies or a smaller min_distance")
            pos[k, c * n_at:(c + 1) * n_at] = cand[pick]
            frc[k, c * n_at:(c + 1) * n_at] = rots[pick].apply(frames.forces[src])
            energy[k] += frames.energy[src]
        bar.update()
    bar.close()
    numbers = np.tile(frames.numbers, n_copies)
    kind = "non-interacting copies"
    if teacher is not None:   # the teacher's labels of the whole periodic system
        kind = f"interacting copies ({type(teacher).__name__})"
        bar = progress(total=n_out, unit="frame", desc="teacher labels",
                       disable=not show_progress)
        for k in range(n_out):
            atoms = Atoms(numbers=numbers, positions=pos[k], cell=cell, pbc=True)
            atoms.calc = teacher
            energy[k] = atoms.get_potential_energy()
            frc[k] = atoms.get_forces()
            bar.update()
        bar.close()
    meta = {**frames.metadata, "kind": kind, "copies": int(n_copies),
            "cell_angstrom": cell.tolist(),
            "min_distance_angstrom": float(min_distance) if not isinstance(min_distance, dict) else
            {f"{a}-{b}": v for (a, b), v in pairs.items()},
            "copies_seed": int(seed)}
    return Frames(positions=pos, numbers=numbers, energy=energy,
                  forces=frc, cell=np.broadcast_to(cell, (n_out, 3, 3)).copy(),
                  pbc=np.ones(3, bool), metadata=meta)
