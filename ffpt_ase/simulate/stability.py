"""MD stability harness: K independent Langevin trajectories, time of first failure each.

Criteria, checked every ``check_interval`` steps against the starting structure's bonded
topology (bonds: atoms closer than 1.25 x the sum of covalent radii; distances with the
minimum-image convention in periodic cells), as Fu et al. define them ("Forces are not
enough", TMLR 2023):

* ``bond_deviation`` (failure): a bonded distance deviates by more than 0.5 A from its
  reference length: the mean over reference frames when the user gives them (e.g. the ab
  initio training frames, ``reference_frames=``), else its length in the start structure;
* ``nonfinite`` (failure): non-finite energy, forces or positions;
* ``rdf_deviation`` (failure, liquids, optional): the radial distribution function g_ab(r)
  of a window of ``window_ps`` (1 ps) deviates from a reference g_ab(r) (e.g. of the ab
  initio frames) by more than ``max_error``, the mean absolute difference over the
  reference's r grid (:class:`RDFCriterion`, Fu et al.'s criterion for liquids);
* ``new_bond`` (its own category): two atoms that are not bonded in the reference come
  within bonding distance (1.25 x covalent radii). Recorded per trajectory (first time and
  atoms); it counts as a failure only when asked (``count_new_bonds=True``), since Fu et
  al.'s criterion is the bond-length one.

A failed trajectory stops; the others continue. Results are appended to
``trajectories.jsonl`` as each trajectory ends, so a rerun skips finished ones (the output
is a :class:`~ffpt_ase.runfolder.RunFolder`: locked, fingerprinted, refused when the model
or a setting changed). The summary
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

from ..forcefields.topology import BOND_SCALE
from ..progress import progress
from ..runtime import set_threads
from ..settings import redefault, setting
from .md import MDSettings, StopRun, langevin, read_structures
from .observables import rdf

log = logging.getLogger(__name__)

MAX_DEVIATION_A = 0.5
ENGINES = ("batched", "ase")


def pair_distances(atoms: Atoms, pairs: np.ndarray) -> np.ndarray:
    """Distances of atom pairs, minimum image in periodic directions (A)."""
    vec = atoms.positions[pairs[:, 1]] - atoms.positions[pairs[:, 0]]
    if atoms.pbc.any():
        vec, _ = find_mic(vec, atoms.cell, atoms.pbc)
    return np.linalg.norm(vec, axis=1)


def all_pair_distances(atoms: Atoms) -> np.ndarray:
    return atoms.get_all_distances(mic=bool(atoms.pbc.any()))


class StabilityCriteria:
    """Evaluates the criteria of the module docstring for one reference structure.

    ``reference_frames``: optional frames (a sequence of ``Atoms`` with the reference's atoms
    in the same order) whose mean bond lengths replace the start structure's.
    """

    def __init__(self, reference: Atoms, max_deviation: float = MAX_DEVIATION_A,
                 bond_scale: float = BOND_SCALE, reference_frames=None,
                 count_new_bonds: bool = False):
        if not max_deviation > 0:
            raise ValueError(f"max_deviation must be > 0 A, got {max_deviation}")
        d = all_pair_distances(reference)
        rad = covalent_radii[reference.numbers]
        self.cutoff = bond_scale * (rad[:, None] + rad[None])
        bonded = np.triu(d < self.cutoff, k=1)
        self.bonds = np.argwhere(bonded)
        self.ref_lengths = d[bonded]
        self.reference_source = "start structure"
        if reference_frames is not None and len(reference_frames):
            for k, frame in enumerate(reference_frames):
                if not np.array_equal(frame.numbers, reference.numbers):
                    raise ValueError(f"reference frame {k} has other atoms than the start "
                                     "structure (same elements in the same order needed)")
            self.ref_lengths = np.mean([pair_distances(f, self.bonds)
                                        for f in reference_frames], axis=0)
            self.reference_source = f"mean over {len(reference_frames)} reference frames"
        self.nonbonded = np.triu(~(d < self.cutoff), k=1)
        self.max_deviation = max_deviation
        self.count_new_bonds = count_new_bonds

    def new_bond(self, atoms: Atoms):
        """``(i, j, distance)`` of a pair bonded now but not in the reference, or None."""
        d = all_pair_distances(atoms)
        new = np.argwhere(self.nonbonded & (d < self.cutoff))
        if len(new):
            i, j = new[0]
            return int(i), int(j), float(d[i, j])
        return None

    def check(self, atoms: Atoms, energy=None, forces=None):
        """``None`` if the frame is no failure, else ``(reason, details)``."""
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
        if self.count_new_bonds:
            new = self.new_bond(atoms)
            if new is not None:
                return "new_bond", {"atoms": [new[0], new[1]], "distance_A": new[2]}
        return None


class RDFCriterion:
    """Windowed g_ab(r) of a periodic liquid against a reference (see module docstring).

    ``reference_images``: frames whose g_ab(r) is the reference; ``elements``: the atomic
    numbers (a, b); frames are added with :meth:`add` and judged per ``window_ps`` window.
    """

    def __init__(self, reference_images, elements=(8, 8), window_ps: float = 1.0,
                 max_error: float = 0.1, r_max: float = 6.0, n_bins: int = 60):
        if not window_ps > 0 or not max_error > 0:
            raise ValueError("the RDF criterion needs window_ps > 0 and max_error > 0")
        self.elements, self.window_ps, self.max_error = tuple(elements), window_ps, max_error
        self.r_max, self.n_bins = r_max, n_bins
        self.r, self.g_ref = rdf(reference_images, *self.elements, r_max=r_max, n_bins=n_bins)
        self.reset()

    def reset(self) -> None:
        """Forget the frames seen so far (a new trajectory); the reference g(r) stays."""
        self._frames, self._window = [], 0

    def state_dict(self) -> dict:
        """The current window's frames (positions), for a checkpoint."""
        return {"window": self._window,
                "positions": [f.positions.tolist() for f in self._frames]}

    def load_state_dict(self, state: dict, atoms: Atoms) -> None:
        """Restore :meth:`state_dict` for frames of ``atoms`` (numbers, cell)."""
        self._window = int(state["window"])
        self._frames = []
        for pos in state["positions"]:
            frame = atoms.copy()
            frame.positions = np.asarray(pos, float)
            self._frames.append(frame)

    def error(self, images) -> float:
        """Mean absolute difference between the images' g_ab(r) and the reference."""
        _, g = rdf(images, *self.elements, r_max=self.r_max, n_bins=self.n_bins)
        return float(np.mean(np.abs(g - self.g_ref)))

    def add(self, atoms: Atoms, time_ps: float):
        """Add a frame at ``time_ps``; at the end of each window ``(reason, details)`` if
        the window's g(r) is too far from the reference, else None."""
        window = int(time_ps // self.window_ps)
        verdict = None
        if window != self._window and self._frames:
            err = self.error(self._frames)
            if err > self.max_error:
                verdict = ("rdf_deviation", {"window_ps": [self._window * self.window_ps,
                                                           (self._window + 1) * self.window_ps],
                                             "rdf_error": err, "max_error": self.max_error})
            self._frames = []
        self._window = window
        self._frames.append(atoms.copy())
        return verdict


@dataclass(kw_only=True)
class StabilityConfig(MDSettings):
    """Settings of a stability run (flags of ``ffpt-ase stability``)."""

    system: str = setting(None, "structure file (the command line also takes a built-in "
                                "system name)", role="input")
    output: str = redefault(MDSettings, "output", "runs/stability")
    trajectories: int = setting(8, "independent trajectories", role="free")
    time_ps: float = setting(10.0, "simulated time per trajectory", unit="ps")
    check_interval: int = setting(20, "steps between criterion checks")
    save_interval: int = setting(0, "steps between saved frames (0: none)")
    reference_frames: str | None = setting(
        None, "frames (same atoms) whose mean bond lengths are the reference (default: the "
              "start structure's)", role="input")
    count_new_bonds: bool = setting(False, "a bond that forms counts as a failure (default: "
                                           "only recorded)")
    rdf_reference: str | None = setting(
        None, "liquids: frames whose g(r) is the reference; a 1-ps window whose g(r) "
              "deviates more than rdf_max_error is a failure", role="input")
    rdf_elements: tuple = setting((8, 8), "atomic numbers of the RDF pair", cli=False)
    rdf_max_error: float = setting(0.1, "mean |g(r) - g_ref(r)| allowed per 1-ps window")
    engine: str = setting("batched", "batched: trajectories advance together, one model call "
                                     "per step (BAOAB Langevin); ase: one ASE Langevin run "
                                     "after another", choices=ENGINES)
    batch_size: int = setting(0, "trajectories advanced together by the batched engine (0: "
                                 "all)")
    checkpoint_interval: int = setting(2000, "steps between checkpoints of the batched "
                                             "engine", role="free")

    def __post_init__(self):
        super().__post_init__()
        checks = {"trajectories": self.trajectories >= 1, "time_ps": self.time_ps > 0,
                  "temperature_K": self.temperature_K > 0, "timestep_fs": self.timestep_fs > 0,
                  "friction_per_ps": self.friction_per_ps >= 0,
                  "check_interval": self.check_interval >= 1,
                  "save_interval": self.save_interval >= 0, "rdf_max_error": self.rdf_max_error > 0,
                  "engine": self.engine in ENGINES, "batch_size": self.batch_size >= 0,
                  "checkpoint_interval": self.checkpoint_interval >= 1}
        bad = [f"{k}={getattr(self, k)}" for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"stability settings out of range: {', '.join(bad)} (trajectories "
                             ">= 1, time, temperature, timestep and rdf_max_error > 0, friction "
                             ">= 0, intervals >= 1, batch_size >= 0, engine one of "
                             f"{ENGINES})")


def load_structure(path: str | Path) -> Atoms:
    """The first frame of a structure file (any ASE format)."""
    return read_structures(path, 0, hint=" (the command line also takes a built-in system "
                                         "name)")


def run_trajectory(atoms: Atoms, calc, cfg: StabilityConfig, index: int,
                   criteria: StabilityCriteria, traj_file: Path | None = None,
                   rdf_criterion: RDFCriterion | None = None) -> dict:
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
              "details": {}, "time_to_failure_ps": None, "new_bond": None}
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
        if bad is None and rdf_criterion is not None:
            bad = rdf_criterion.add(atoms, dyn.nsteps * dt * 1e-3)
        # with count_new_bonds, check() has just looked for a new bond (none, or it failed)
        if result["new_bond"] is None and bad is None and not criteria.count_new_bonds:
            new = criteria.new_bond(atoms)
            if new is not None:
                result["new_bond"] = {"time_ps": dyn.nsteps * dt * 1e-3,
                                      "atoms": [new[0], new[1]], "distance_A": new[2]}
        if bad is not None:
            result.update(failed=True, reason=bad[0])
            result["details"].update(bad[1])
            result["time_to_failure_ps"] = dyn.nsteps * dt * 1e-3
            raise StopRun

    if rdf_criterion is not None:
        rdf_criterion.reset()
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


def run_stability(cfg: StabilityConfig, calc=None, start: Atoms | None = None,
                  show_progress: bool = True, start_over: bool = False) -> dict:
    """Run (or complete) the K trajectories and write the summary; returns it.

    ``start``: the structure every trajectory starts from and the bond reference (default:
    the structure file ``cfg.system``); ``calc``: the ML calculator (default: ``cfg.model``).
    The survival curve is in the summary (``survival``); plotting is the caller's.

    ``cfg.engine``: ``batched`` advances the trajectories together (``batch_size`` at a
    time) with one model call per step (:mod:`~ffpt_ase.simulate.ensemble`; any ASE
    calculator works, an ``FFPTCalculator`` is batched), ``ase`` runs ASE's Langevin one
    trajectory after another.

    The output is a :class:`~ffpt_ase.runfolder.RunFolder`: a rerun skips the finished
    trajectories and continues the batch in flight from its last checkpoint
    (``ensemble.pt``), with the result an uninterrupted run gives (each trajectory is seeded
    by its index); another model, start structure or setting is refused, more
    ``trajectories`` extend the run, ``start_over`` moves an old run aside.
    """
    from ..runfolder import RunFolder, atoms_digest, calculator_digest, file_digest
    from .md import check_start

    set_threads(cfg.threads)
    if calc is None:
        if cfg.model is None:
            raise ValueError("give a model checkpoint (--model) or a calculator")
        from ..calculators import FFPTCalculator
        calc = FFPTCalculator.from_checkpoints(cfg.model, dtype=cfg.dtype, device=cfg.device,
                                               compile=cfg.compile)
    reference = start.copy() if start is not None else load_structure(cfg.system)
    check_start(reference, calc)
    frames = None
    if cfg.reference_frames:
        frames = read_structures(cfg.reference_frames, what="frames file")
    criteria = StabilityCriteria(reference, reference_frames=frames,
                                 count_new_bonds=cfg.count_new_bonds)
    rdf_images = None
    if cfg.rdf_reference:
        rdf_images = read_structures(cfg.rdf_reference, what="frames file")
        RDFCriterion(rdf_images, cfg.rdf_elements, max_error=cfg.rdf_max_error)  # checks it
    roles = cfg.by_role()
    inputs = {"model": calculator_digest(calc), "start": atoms_digest(reference)}
    for name in ("reference_frames", "rdf_reference"):
        if getattr(cfg, name):
            inputs[name] = file_digest(getattr(cfg, name))
    with RunFolder(cfg.output, "stability", settings=roles["setting"], inputs=inputs,
                   free={**roles["free"], "system": cfg.system, "model": cfg.model},
                   start_over=start_over) as run:
        done = {r["trajectory"]: r for r in run.read_lines("trajectories.jsonl")}
        runner = None
        if cfg.engine == "batched":
            from .stability_batched import BatchedStability
            runner = BatchedStability(run, cfg, reference, calc, criteria, rdf_images, done,
                                      show_progress)
            runner.run()
        else:
            _ase_trajectories(run, cfg, reference, calc, criteria, rdf_images, done,
                              show_progress)
        summary = stability_summary(cfg, [done[k] for k in sorted(done)
                                          if k < cfg.trajectories], criteria)
        if runner is not None:
            summary["replica_steps_per_s"] = runner.rate
        run.write_json("summary.json", summary)
    return summary


def log_result(r: dict) -> None:
    """One log line of a finished trajectory."""
    log.info("trajectory %d: %s", r["trajectory"],
             f"failed ({r['reason']}) at {r['time_to_failure_ps']:.3f} ps"
             if r["failed"] else f"stable for {r['simulated_ps']:.3f} ps")


def _ase_trajectories(run, cfg, reference, calc, criteria, rdf_images, done, show_progress):
    """The ``ase`` engine: one ASE Langevin trajectory after another."""
    rdf_criterion = None if rdf_images is None else \
        RDFCriterion(rdf_images, cfg.rdf_elements, max_error=cfg.rdf_max_error)
    bar = progress(total=cfg.trajectories, initial=len([k for k in done
                                                        if k < cfg.trajectories]),
                   unit="traj", desc="stability", disable=not show_progress)
    for k in range(cfg.trajectories):
        if k in done:
            continue
        r = run_trajectory(reference, calc, cfg, k, criteria,
                           run.path / f"traj_{k:03d}.traj" if cfg.save_interval else None,
                           rdf_criterion)
        run.append_line("trajectories.jsonl", json.dumps(r))
        done[k] = r
        bar.update(1)
        log_result(r)
    bar.close()


def stability_summary(cfg: StabilityConfig, results: list, criteria: StabilityCriteria) -> dict:
    """Time-to-failure statistics and the survival curve of finished trajectories.
    ``time_to_failure_of_failed_ps`` describes the failed trajectories only; the median
    over all of them is the Kaplan-Meier one (``analysis.survival.median_survival``)."""
    ttf = np.array([r["time_to_failure_ps"] for r in results if r["failed"]])
    t, surv = survival_curve(results, cfg.time_ps)
    return {
        "config": {k: (str(v) if k == "model" else v) for k, v in asdict(cfg).items()},
        "n_trajectories": len(results), "n_failed": int(len(ttf)),
        "fraction_stable": float(1 - len(ttf) / max(len(results), 1)),
        "time_to_failure_of_failed_ps": {
            "mean": float(ttf.mean()) if len(ttf) else None,
            "median": float(np.median(ttf)) if len(ttf) else None,
            "min": float(ttf.min()) if len(ttf) else None},
        "mean_simulated_ps": float(np.mean([r["simulated_ps"] for r in results])),
        "reasons": {r: int(sum(1 for x in results if x["reason"] == r))
                    for r in {x["reason"] for x in results if x["failed"]}},
        "bonds_checked": int(len(criteria.bonds)),
        "bond_reference": criteria.reference_source,
        "trajectories_with_new_bonds": int(sum(1 for r in results if r.get("new_bond"))),
        "new_bonds_count_as_failure": cfg.count_new_bonds,
        "survival": {"time_ps": t.tolist(), "fraction_surviving": surv.tolist()},
        "trajectories": results,
    }
