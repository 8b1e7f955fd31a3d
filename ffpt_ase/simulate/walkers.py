"""Metadynamics walkers: N copies of a system advanced together on the ensemble engine
(:mod:`~ffpt_ase.simulate.ensemble`, one batched model call per step), each with its own
PLUMED instance.

Each walker's PLUMED is fed from the batched step through PLUMED's Python module, with the
units ASE's own wrapper sets (energies in eV, lengths in Angstrom, times in ASE's unit; the
deck's ``UNITS`` line decides what PLUMED reads and writes), so a deck behaves as it does in
the single-walker driver.

**Shared bias** (default, ``share_bias=True``): PLUMED's multiple-walkers mode. Every
walker's ``METAD`` gets ``WALKERS_N=N WALKERS_ID=k WALKERS_RSTRIDE=PACE`` and the hills file
``HILLS`` of the run folder, which PLUMED turns into ``HILLS.0 ... HILLS.(N-1)``: each walker
writes its own and reads the others' every ``PACE`` steps, so the N walkers build one bias and
one free-energy surface (``ffpt-ase fes`` on the run folder reads all of them). The same mode
runs walkers as separate processes or on separate machines sharing a folder: give the deck's
``METAD`` ``WALKERS_N``, ``WALKERS_ID`` and ``WALKERS_DIR`` yourself and start one
``ffpt-ase metad`` (single walker) per walker.
**Independent walkers** (``share_bias=False``): N separate metadynamics runs, each with its
own bias (statistics over repeats).

Run folder (a :class:`~ffpt_ase.runfolder.RunFolder`)::

    HILLS.k                       the walkers' hills (shared bias)
    walker_KK/COLVAR, HILLS       each walker's PLUMED files (HILLS: independent walkers)
    walker_KK/trajectory.traj     frames with momenta every ``traj_interval`` steps
    walker_KK/plumed.dat, .log    the walker's deck as PLUMED read it, and its log
    state.json                    the restart point: steps done, every walker's positions,
                                  velocities, biased forces, random state, observers
    events.jsonl, summary.json    observers' events (with the walker's index), the summary

**A walker that fails** (a non-finite energy, force or position after a step) leaves the
batch (:meth:`Ensemble.freeze`) and the others go on: the step is recorded as the walker's
``failed_at_step`` (``summary.json``, ``per_walker``; a ``non_finite`` event in
``events.jsonl``), its files end at its last good checkpoint, and its observers count only
the frames before it failed. The run stops early only when every walker has failed.

Running the same command again resumes from the last checkpoint: every walker's files are
cut back to it and PLUMED restarts reading the hills so far. Independent walkers then
continue exactly as an uninterrupted run. Shared walkers read each other's hills at a restart
at once, while in an uninterrupted run a walker receives the others' latest hills only at its
next exchange (every ``PACE`` steps): the resumed run holds the same hills, received up to one
exchange earlier, so its trajectories are not bitwise those of an uninterrupted run.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from ase import units

from ..progress import progress
from .ensemble import Ensemble, replica_forces, state_from_json, state_to_json
from .md import cut_trajectory, ns_per_day

log = logging.getLogger(__name__)


class PlumedBias:
    """One PLUMED instance per walker (the ``bias`` of an :class:`Ensemble`).

    ``decks``: each walker's deck lines; ``replicas``: their ``Atoms`` (masses, cells);
    ``timestep_fs``; ``temperature_K`` (PLUMED's kT); ``logs``: each walker's log file;
    ``restart``: PLUMED's RESTART (read the hills so far, append to the files).
    """

    def __init__(self, decks, replicas, timestep_fs: float, temperature_K: float, logs,
                 restart: bool = False):
        from .metad import require_plumed
        plumed = require_plumed()
        ps = 1000 * units.fs
        self.instances, self.masses, self.cells = [], [], []
        for lines, atoms, log_file in zip(decks, replicas, logs):
            p = plumed.Plumed()
            # the units ase.calculators.plumed sets: MD energies in eV, lengths in A, time
            # in ASE's unit; the deck's UNITS decide PLUMED's own
            p.cmd("setMDEnergyUnits", units.mol / units.kJ)
            p.cmd("setMDLengthUnits", 1 / units.nm)
            p.cmd("setMDTimeUnits", 1 / ps)
            p.cmd("setMDChargeUnits", 1.0)
            p.cmd("setMDMassUnits", 1.0)
            p.cmd("setNatoms", len(atoms))
            p.cmd("setMDEngine", "ffpt-ase")
            p.cmd("setLogFile", str(log_file))
            p.cmd("setTimestep", float(timestep_fs * units.fs))
            p.cmd("setRestart", bool(restart))
            p.cmd("setKbT", float(units.kB * temperature_K))
            p.cmd("init")
            for line in lines:
                p.cmd("readInputLine", line)
            self.instances.append(p)
            self.masses.append(np.ascontiguousarray(atoms.get_masses(), float))
            self.cells.append(np.array(atoms.cell.array) if atoms.cell.rank == 3 else None)
        self.offsets = np.concatenate([[0], np.cumsum([len(m) for m in self.masses])])

    def __call__(self, step, positions, energy, forces, running) -> None:
        host = positions.detach().cpu().numpy()
        for k in np.flatnonzero(running):
            p = self.instances[k]
            lo, hi = self.offsets[k], self.offsets[k + 1]
            p.cmd("setStep", int(step))
            if self.cells[k] is not None:
                p.cmd("setBox", self.cells[k])
            p.cmd("setPositions", np.ascontiguousarray(host[lo:hi]))
            p.cmd("setEnergy", float(energy[k]))
            p.cmd("setMasses", self.masses[k])
            bias_forces = np.zeros((hi - lo, 3))
            p.cmd("setForces", bias_forces)
            virial = np.zeros((3, 3))
            p.cmd("setVirial", virial)
            p.cmd("prepareCalc")
            p.cmd("performCalc")
            bias = np.zeros(1)
            p.cmd("getBias", bias)
            forces[lo:hi] += torch.from_numpy(bias_forces).to(forces.device)
            energy[k] += float(bias[0])

    def close(self) -> None:
        for p in self.instances:
            p.finalize()
        self.instances = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def walker_deck(lines: list, walker: int, n_walkers: int, hills: Path | None) -> list:
    """Deck lines of walker ``walker`` of ``n_walkers`` sharing one bias: the METAD line
    writes ``hills`` (PLUMED appends ``.walker``) and exchanges hills every PACE steps;
    ``hills=None`` (independent walkers) leaves the deck as it is."""
    if hills is None:
        return list(lines)
    out, found = [], False
    for line in lines:
        words = line.split()
        if "METAD" in words or (words and words[0].endswith(":") and len(words) > 1
                                and words[1] == "METAD"):
            if "..." in words:
                raise ValueError("a METAD action continued over several lines (...) cannot "
                                 "be set up for walkers: write it on one line")
            if any(w.upper().startswith("WALKERS_") for w in words):
                raise ValueError("the deck sets up multiple walkers itself (WALKERS_...): run "
                                 "it as one walker per process instead of --walkers")
            pace = next((w.split("=", 1)[1] for w in words if w.upper().startswith("PACE=")),
                        "1")
            words = [w for w in words if not w.upper().startswith("FILE=")]
            words += [f"FILE={hills}", f"WALKERS_N={n_walkers}", f"WALKERS_ID={walker}",
                      f"WALKERS_RSTRIDE={pace}"]
            line, found = " ".join(words), True
        out.append(line)
    if not found:
        raise ValueError("the deck has no METAD action: there is no bias for walkers to share")
    return out


def walker_folder(out: Path, k: int) -> Path:
    return out / f"walker_{k:02d}"


def run_walkers(run, cfg, deck_for, fs_per_unit, height, atoms, calc, observers, record,
                show_progress) -> dict:
    """The multi-walker body of :func:`~ffpt_ase.simulate.metad.run_metadynamics`, inside its
    locked run folder ``run``; ``deck_for(folder)``: the deck's lines with relative files
    redirected into ``folder``."""
    from ase.io import Trajectory

    from .metad import _cut_back_files
    from .observers import merge_summaries

    out, n, dt = run.path, cfg.walkers, cfg.timestep_fs
    folders = [walker_folder(out, k) for k in range(n)]
    for f in folders:
        f.mkdir(exist_ok=True)
    shared = out / "HILLS" if cfg.share_bias else None
    decks = [walker_deck(deck_for(f), k, n, shared) for k, f in enumerate(folders)]
    for f, lines in zip(folders, decks):
        run.write_text(f"{f.name}/plumed.dat", "\n".join(lines) + "\n")
    walker_obs = [[copy.deepcopy(o) for o in observers] for _ in range(n)]
    state_name, events_name = "state.json", "events.jsonl"
    state = run.read_json(state_name)
    replicas = [atoms] * n
    forces = replica_forces(calc, replicas)
    seeds = [[cfg.seed, k] for k in range(n)]

    def hills_of(k):
        return [Path(f"{shared}.{k}")] if shared is not None else [folders[k] / "HILLS"]

    if state is None:
        for k, f in enumerate(folders):
            for path in [*hills_of(k), f / "COLVAR", f / "trajectory.traj"]:
                path.unlink(missing_ok=True)
        (out / events_name).unlink(missing_ok=True)
        n_frames = [0] * n
        counts = {"events": 0, "frames_with_events": 0}
        wall_done, stopped = 0.0, None
        failed = {}
    else:
        n_frames = [int(c) for c in state["trajectory_frames"]]
        counts, wall_done = dict(state["event_counts"]), float(state.get("wall_s", 0.0))
        stopped = state.get("stopped_on")
        failed = {int(k): int(v) for k, v in state.get("failed_at_step", {}).items()}
        steps_done = int(state["steps_done"])
        for k, f in enumerate(folders):
            _cut_back_files(hills_of(k) + [f / "COLVAR"], steps_done, dt / fs_per_unit)
            cut_trajectory(f / "trajectory.traj", n_frames[k])
            for o in walker_obs[k]:
                if o.name in state["observers"][k]:
                    o.load_state_dict(state["observers"][k][o.name])
        events = run.read_lines(events_name)
        kept = [e for e in events if e.get("step", 0) <= steps_done]
        if len(kept) < len(events):
            run.write_text(events_name, "".join(json.dumps(e) + "\n" for e in kept))
        complete = steps_done >= cfg.steps or bool(cfg.stop_on_event and stopped) \
            or len(failed) == n
        summary = run.read_json("summary.json") if complete else None
        if summary is not None:
            log.info("%s is complete (%d steps); nothing to do", out, steps_done)
            return summary

    logs = [f / "plumed.log" for f in folders]
    with PlumedBias(decks, replicas, dt, cfg.temperature_K, logs,
                    restart=state is not None) as bias:
        if state is None:
            ens = Ensemble(replicas, forces, dt, cfg.temperature_K, cfg.friction_per_ps,
                           seeds=seeds, bias=bias)
        else:
            ens = Ensemble(replicas, forces, dt, cfg.temperature_K, cfg.friction_per_ps,
                           seeds=seeds)
            ens.load_state_dict(state_from_json(state["ensemble"]))
            ens.bias = bias
        start_step = ens.step_count
        writers = [Trajectory(str(f / "trajectory.traj"), "a" if n_frames[k] else "w")
                   for k, f in enumerate(folders)]
        bar = progress(total=cfg.steps, initial=start_step, unit="step",
                       desc=record.get("label", "metad") + f" x{n}",
                       disable=not show_progress)
        t0 = time.perf_counter()

        def checkpoint():
            for k, w in enumerate(writers):
                if k not in failed:
                    w.write(ens.atoms(k))
                    n_frames[k] += 1
            run.after_write("trajectory.traj")
            run.write_json(state_name, {
                "steps_done": ens.step_count, "trajectory_frames": n_frames,
                "walkers": n, "share_bias": cfg.share_bias,
                "wall_s": round(wall_done + time.perf_counter() - t0, 3),
                "ensemble": state_to_json(ens.state_dict()), "event_counts": counts,
                "stopped_on": stopped, "failed_at_step": {str(k): v for k, v in failed.items()},
                "observers": [{o.name: o.state_dict() for o in obs} for obs in walker_obs],
                "record": record,
                "config": {k: (str(v) if k == "model" else v) for k, v in asdict(cfg).items()}})

        def check():
            nonlocal stopped
            step = ens.step_count
            first = None
            for k in range(n):
                if k in failed:
                    continue
                frame = ens.atoms(k)
                events = []
                for o in walker_obs[k]:
                    events += o.observe(frame, step, step * dt * 1e-3)
                if events:
                    counts["events"] += len(events)
                    counts["frames_with_events"] += 1
                    for e in events:
                        run.append_line(events_name, json.dumps({"step": step, "walker": k,
                                                                 **e}))
                    first = first or {"walker": k, **events[0]}
            if first is not None and cfg.stop_on_event:
                stopped = first
            return stopped is not None and cfg.stop_on_event

        def fail(k, step):
            ens.freeze(int(k))
            failed[int(k)] = step
            counts["events"] += 1
            run.append_line(events_name, json.dumps(
                {"step": step, "walker": int(k), "type": "non_finite",
                 "detail": "non-finite energy, force or position: the walker left the run"}))
            log.warning("walker %d: non-finite energy, force or position at step %d; it "
                        "leaves the run, the others go on", k, step)

        finished = False
        try:
            stop = False
            if state is None:
                stop = check()
                checkpoint()
            while ens.step_count < cfg.steps and not stop and len(failed) < n:
                ens.step()
                step = ens.step_count
                for k in ens.nonfinite():
                    fail(k, step)
                if step % cfg.check_interval == 0:
                    stop = check()
                if step % cfg.traj_interval == 0 or stop:
                    checkpoint()
                if step % cfg.check_interval == 0:
                    wall = time.perf_counter() - t0
                    fields = {"ns_per_day": f"{ns_per_day((step - start_step) * n, dt, wall):.2f}"}
                    for o in walker_obs[0]:
                        fields.update(o.progress_fields())
                    bar.set_postfix(refresh=False, **fields)
                    bar.update(step - bar.n)
            finished = True
            if stop:
                log.warning("stopped on an event: %s", stopped)
        finally:
            bar.close()
            if finished and ens.step_count % cfg.traj_interval and not stop:
                checkpoint()
            for w in writers:
                w.close()
    for k, step in failed.items():   # (PLUMED's files are closed now) drop the failed step
        _cut_back_files(hills_of(k) + [folders[k] / "COLVAR"], step - 1, dt / fs_per_unit)
    elapsed = time.perf_counter() - t0
    done = ens.step_count
    summary = {**record, "walkers": n, "share_bias": cfg.share_bias, "steps": done,
               "simulated_ps": done * dt * 1e-3,
               "simulated_ps_all_walkers": n * done * dt * 1e-3,
               "wall_s_this_run": round(elapsed, 2),
               "ns_per_day": ns_per_day((done - start_step) * n, dt, elapsed),
               "ns_per_day_per_walker": ns_per_day(done - start_step, dt, elapsed),
               "hill_height_kJ_per_mol": height, "deck": str(cfg.deck),
               "friction_per_ps": cfg.friction_per_ps, **counts, "stopped_on": stopped,
               "failed_at_step": {str(k): v for k, v in sorted(failed.items())},
               "output": str(out),
               "files": {"HILLS": [str(p) for k in range(n) for p in hills_of(k)],
                         "COLVAR": [str(f / "COLVAR") for f in folders],
                         "trajectory.traj": [str(f / "trajectory.traj") for f in folders],
                         "events.jsonl": str(out / events_name)}}
    summary.update(merge_summaries(walker_obs))
    summary["walker_folders"] = [str(f) for f in folders]
    summary["per_walker"] = [{"failed_at_step": failed.get(k),
                              **{o.name: o.summary() for o in obs}}
                             for k, obs in enumerate(walker_obs)]
    run.write_json("summary.json", summary)
    return summary
