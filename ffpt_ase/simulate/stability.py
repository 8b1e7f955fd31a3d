"""MD stability harness: K independent Langevin trajectories, time of first failure each.

Failure criteria, checked every ``check_interval`` steps against the starting structure's
bonded topology (bonds: atoms closer than 1.25 x the sum of covalent radii; distances with
the minimum-image convention in periodic cells):

* ``bond_deviation``: a bonded distance deviates by more than 0.5 A from its value in the
  reference structure (the criterion of Fu et al., "Forces are not enough", TMLR 2023);
* ``new_bond``: two atoms that are not bonded in the reference come within bonding distance
  (1.25 x covalent radii), i.e. the topology changed (collapse, unphysical reaction);
* ``nonfinite``: non-finite energy, forces or positions.

A failed trajectory stops; the others continue. Results are appended to
``trajectories.jsonl`` as each trajectory ends, so a rerun skips finished ones. The summary
(``summary.json``) has time-to-failure statistics and the survival curve (``survival.png``).
Frames can be saved (``save_interval``) for liquid analysis (RDF, diffusion).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import covalent_radii
from ase.geometry import find_mic

from ..progress import progress
from .md import StopRun, langevin

log = logging.getLogger(__name__)

BOND_SCALE = 1.25
MAX_DEVIATION_A = 0.5


def pair_distances(atoms: Atoms, pairs: np.ndarray) -> np.ndarray:
    """Distances of atom pairs, minimum image in periodic directions (A)."""
    vec = atoms.positions[pairs[:, 1]] - atoms.positions[pairs[:, 0]]
    if atoms.pbc.any():
        vec, _ = find_mic(vec, atoms.cell, atoms.pbc)
    return np.linalg.norm(vec, axis=1)


def all_pair_distances(atoms: Atoms) -> np.ndarray:
    return atoms.get_all_distances(mic=bool(atoms.pbc.any()))


class StabilityCriteria:
    """Evaluates the failure criteria of the module docstring for one reference structure."""

    def __init__(self, reference: Atoms, max_deviation: float = MAX_DEVIATION_A,
                 bond_scale: float = BOND_SCALE):
        d = all_pair_distances(reference)
        rad = covalent_radii[reference.numbers]
        self.cutoff = bond_scale * (rad[:, None] + rad[None])
        bonded = np.triu(d < self.cutoff, k=1)
        self.bonds = np.argwhere(bonded)
        self.ref_lengths = d[bonded]
        self.nonbonded = np.triu(~(d < self.cutoff), k=1)
        self.max_deviation = max_deviation

    def check(self, atoms: Atoms, energy=None, forces=None):
        """``None`` if the frame is fine, else ``(reason, details)``."""
        if not np.all(np.isfinite(atoms.positions)) or \
                (energy is not None and not np.isfinite(energy)) or \
                (forces is not None and not np.all(np.isfinite(forces))):
            return "nonfinite", {}
        if len(self.bonds):
            r = pair_distances(atoms, self.bonds)
            dev = np.abs(r - self.ref_lengths)
            k = int(np.argmax(dev))
            if dev[k] > self.max_deviation:
                return "bond_deviation", {"atoms": self.bonds[k].tolist(),
                                          "length_A": float(r[k]),
                                          "reference_A": float(self.ref_lengths[k])}
        d = all_pair_distances(atoms)
        new = np.argwhere(self.nonbonded & (d < self.cutoff))
        if len(new):
            i, j = new[0]
            return "new_bond", {"atoms": [int(i), int(j)], "distance_A": float(d[i, j])}
        return None


@dataclass
class StabilityConfig:
    system: str                      # structure file or built-in system name
    model: object = None             # checkpoint path(s) for FFPTCalculator
    trajectories: int = 8
    time_ps: float = 10.0
    temperature_K: float = 300.0
    timestep_fs: float = 0.5
    friction_per_ps: float = 2.0
    seed: int = 0
    output: str = "runs/stability"
    check_interval: int = 20
    save_interval: int = 0           # steps between saved frames (0: none)
    dtype: str = "float32"
    threads: int = 1


def load_structure(system: str) -> Atoms:
    """A structure file (any ASE format; first frame) or a built-in system name."""
    path = Path(system)
    if path.exists():
        from ase.io import read
        return read(path, index=0)
    from ..sampling import relax
    from ..systems import get_system
    calc, ref, _ = get_system(system)
    return relax(ref, calc)


def run_trajectory(atoms: Atoms, calc, cfg: StabilityConfig, index: int,
                   criteria: StabilityCriteria, traj_file: Path | None = None) -> dict:
    """One Langevin trajectory until failure or ``time_ps``."""
    from ase.md.velocitydistribution import thermalize_momenta

    atoms = atoms.copy()
    atoms.calc = calc
    rng = np.random.default_rng([cfg.seed, index])
    thermalize_momenta(atoms, temperature_K=cfg.temperature_K, rng=rng)
    dt = cfg.timestep_fs
    dyn = langevin(atoms, dt, cfg.temperature_K, cfg.friction_per_ps, rng)
    n_steps = int(round(cfg.time_ps * 1000.0 / dt))
    result = {"trajectory": index, "seed": [cfg.seed, index], "failed": False, "reason": None,
              "details": {}, "time_to_failure_ps": None}
    writer = None
    if traj_file is not None and cfg.save_interval:
        from ase.io import Trajectory
        writer = Trajectory(str(traj_file), "w", atoms)
        dyn.attach(writer.write, interval=cfg.save_interval)

    def check():
        try:
            e = atoms.get_potential_energy()
            f = atoms.get_forces()
        except (ValueError, FloatingPointError, RuntimeError) as err:
            e, f = np.nan, None
            result["details"] = {"error": str(err)}
        bad = criteria.check(atoms, e, f)
        if bad is not None:
            result.update(failed=True, reason=bad[0])
            result["details"].update(bad[1])
            result["time_to_failure_ps"] = dyn.nsteps * dt * 1e-3
            raise StopRun

    dyn.attach(check, interval=cfg.check_interval)
    t0 = time.perf_counter()
    try:
        dyn.run(n_steps)
    except StopRun:
        pass
    except (ValueError, FloatingPointError) as err:  # e.g. non-finite positions in ASE
        result.update(failed=True, reason="nonfinite", details={"error": str(err)},
                      time_to_failure_ps=dyn.nsteps * dt * 1e-3)
    finally:
        if writer is not None:
            writer.close()
    result["simulated_ps"] = dyn.nsteps * dt * 1e-3
    result["wall_s"] = round(time.perf_counter() - t0, 2)
    return result


def survival_curve(results: list, time_ps: float, n_points: int = 200):
    """Fraction of trajectories not yet failed at each time (ps)."""
    t = np.linspace(0.0, time_ps, n_points)
    fail = np.array([r["time_to_failure_ps"] if r["failed"] else np.inf for r in results])
    return t, (fail[None, :] > t[:, None]).mean(axis=1)


def run_stability(cfg: StabilityConfig, calc=None, show_progress: bool = True) -> dict:
    """Run (or complete) the K trajectories and write the summary; returns it."""
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        import torch
        torch.set_num_threads(cfg.threads)
    if calc is None:
        if cfg.model is None:
            raise ValueError("give a model checkpoint (--model) or a calculator")
        from ..calculators import FFPTCalculator
        calc = FFPTCalculator(cfg.model, dtype=cfg.dtype)
    reference = load_structure(cfg.system)
    criteria = StabilityCriteria(reference)
    results_file = out / "trajectories.jsonl"
    done = {}
    if results_file.exists():
        for line in results_file.read_text().splitlines():
            r = json.loads(line)
            done[r["trajectory"]] = r
    bar = progress(total=cfg.trajectories, initial=len(done), unit="traj",
                   desc="stability", disable=not show_progress)
    for k in range(cfg.trajectories):
        if k in done:
            continue
        r = run_trajectory(reference, calc, cfg, k, criteria,
                           out / f"traj_{k:03d}.traj" if cfg.save_interval else None)
        with open(results_file, "a") as fh:
            fh.write(json.dumps(r) + "\n")
        done[k] = r
        bar.update(1)
        log.info("trajectory %d: %s", k, f"failed ({r['reason']}) at {r['time_to_failure_ps']:.3f} ps"
                 if r["failed"] else f"stable for {r['simulated_ps']:.3f} ps")
    bar.close()
    results = [done[k] for k in sorted(done) if k < cfg.trajectories]
    ttf = np.array([r["time_to_failure_ps"] for r in results if r["failed"]])
    t, surv = survival_curve(results, cfg.time_ps)
    summary = {
        "config": {k: (str(v) if k == "model" else v) for k, v in asdict(cfg).items()},
        "n_trajectories": len(results), "n_failed": int(len(ttf)),
        "fraction_stable": float(1 - len(ttf) / max(len(results), 1)),
        "time_to_failure_ps": {"mean": float(ttf.mean()) if len(ttf) else None,
                               "median": float(np.median(ttf)) if len(ttf) else None,
                               "min": float(ttf.min()) if len(ttf) else None},
        "mean_simulated_ps": float(np.mean([r["simulated_ps"] for r in results])),
        "reasons": {r: int(sum(1 for x in results if x["reason"] == r))
                    for r in {x["reason"] for x in results if x["failed"]}},
        "bonds_checked": int(len(criteria.bonds)),
        "trajectories": results,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    from ..analysis.plots import plot_survival
    plot_survival({"model": (t, surv)}, out / "survival.png")
    return summary
