"""Shared pieces of the MD drivers: their common settings, the Langevin integrator in the
package's units and a way for observers to end a run."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import units

from ..settings import RunSettings, setting


@dataclass(kw_only=True)
class MDSettings(RunSettings):
    """What every MD driver needs: the model, the thermostat and the time step."""

    model: object = setting(None, "model checkpoint(s) (several: a committee; also "
                                  "pretrained:NAME)", nargs="+", role="input")
    temperature_K: float = setting(300.0, "temperature", unit="K", flag="--temperature")
    timestep_fs: float = setting(0.5, "time step", unit="fs", flag="--timestep")
    friction_per_ps: float = setting(2.0, "Langevin friction", unit="1/ps", flag="--friction")
    compile: bool = setting(False, "torch.compile the network (about a minute once per "
                                   "process, then faster steps)", role="free")


class StopRun(Exception):
    """Raised by an observer to end an ASE dynamics run (StopIteration would be turned into
    a RuntimeError inside ASE's generator-based ``irun``)."""


def langevin(atoms, timestep_fs: float, temperature_K: float, friction_per_ps: float,
             rng: np.random.Generator):
    """ASE Langevin dynamics with the time step in fs and the friction in 1/ps.

    ``fixcm=False``: ASE 3.28+ warns that its centre-of-mass fixing does not sample NVT
    exactly; gas-phase molecules and liquids here do not need it.
    """
    from ase.md.langevin import Langevin
    return Langevin(atoms, timestep=timestep_fs * units.fs, temperature_K=temperature_K,
                    friction=friction_per_ps / (1000.0 * units.fs), fixcm=False, rng=rng)


def read_structures(path, index=":", what: str = "structure file", hint: str = ""):
    """Frames of a structure file (any ASE format): ``index`` as ASE's ``read`` takes it
    (``":"`` all, ``0`` the first, ``-1`` the last); a missing file is a
    ``FileNotFoundError`` naming ``what`` (and ``hint``)."""
    from pathlib import Path

    from ase.io import read
    if not Path(path).is_file():
        raise FileNotFoundError(f"{what} not found: {path}{hint}")
    return read(path, index=index)


class StartRefused(ValueError):
    """The start structure cannot be run: non-finite positions, or a non-finite energy from
    the model there (a result about the model, where other errors are about the set-up)."""


def check_start(atoms, calc) -> None:
    """Refuse a start structure the model cannot run: non-finite positions or energy
    (:class:`StartRefused`), or elements the calculator does not know (evaluated once, so
    its own error names them)."""
    if not np.all(np.isfinite(atoms.positions)):
        raise StartRefused("the start structure has non-finite positions (NaN or inf)")
    probe = atoms.copy()
    probe.calc = calc
    energy = probe.get_potential_energy()
    if not np.isfinite(energy):
        raise StartRefused(f"the model gives a non-finite energy ({energy}) for the start "
                           "structure")


def ns_per_day(steps: int, timestep_fs: float, wall_s: float) -> float:
    """Simulated nanoseconds per day of wall time (``steps``: replica-steps for the
    aggregate of several replicas)."""
    return steps * timestep_fs * 1e-6 / max(wall_s, 1e-9) * 86400.0


def cut_trajectory(path, n_frames: int) -> int:
    """Keep the first ``n_frames`` frames of an ASE trajectory file (a restart point counts
    that many); returns how many were dropped. Fewer frames than that is an error: the
    run folder was changed by hand."""
    from pathlib import Path

    from ase.io import Trajectory

    from ..files import atomic_path
    path = Path(path)
    if not path.exists():
        if n_frames:
            raise ValueError(f"{path} is missing but the run's state counts {n_frames} "
                             "frames: the run folder was changed; use --start-over")
        return 0
    with Trajectory(str(path)) as tr:
        have = len(tr)
        if have < n_frames:
            raise ValueError(f"{path} has {have} frames, the run's state counts {n_frames}: "
                             "the run folder was changed; use --start-over")
        frames = [tr[k] for k in range(n_frames)] if have > n_frames else None
    if frames is not None:  # a crash between a trajectory write and the state's
        with atomic_path(path) as tmp:
            with Trajectory(str(tmp), "w") as tw:
                for f in frames:
                    tw.write(f)
    return have - n_frames
