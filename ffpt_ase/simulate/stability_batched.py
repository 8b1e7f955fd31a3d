"""The ``batched`` engine of the stability harness (:func:`~ffpt_ase.simulate.stability.
run_stability` imports it when asked, so that commands which never run it do not import
torch): the stability criteria evaluated on an ensemble's tensors, and the runner that
advances the trajectories together, checkpoints them and records their failures."""

from __future__ import annotations

import json
import time

import numpy as np
import torch

from ..progress import progress
from .ensemble import Ensemble, replica_forces
from .md import cut_trajectory, ns_per_day
from .stability import RDFCriterion, log_result


class BatchCriteria:
    """The :class:`~ffpt_ase.simulate.stability.StabilityCriteria` of every replica of an ensemble, evaluated on its
    position tensor at once (bond deviations and new bonds; non-finite values are the
    ensemble's own check). Distances in periodic replicas use the minimum image through
    fractional coordinates (exact for bonds shorter than half the cell's smallest width).

    ``criteria``: one per replica; ``replicas``: their ``Atoms`` (cells, periodicity);
    ``offsets``: the first atom of each replica in the flat layout, and the total last.
    """

    def __init__(self, criteria, replicas, offsets, device="cpu"):
        self.criteria = list(criteria)
        self.offsets = np.asarray(offsets)
        off = self.offsets[:-1]
        bonds = [c.bonds.reshape(-1, 2) + o for c, o in zip(self.criteria, off)]
        self.bond_replica = np.repeat(np.arange(len(bonds)), [len(b) for b in bonds])
        self.bond_first = np.concatenate([[0], np.cumsum([len(b) for b in bonds])])
        self.ref_lengths = np.concatenate([c.ref_lengths for c in self.criteria])
        pairs = [np.argwhere(c.nonbonded) + o for c, o in zip(self.criteria, off)]
        self.pair_replica = np.repeat(np.arange(len(pairs)), [len(p) for p in pairs])
        cut = [c.cutoff[tuple(np.argwhere(c.nonbonded).T)] for c in self.criteria]
        dev = torch.device(device)
        as_t = (lambda a, dt=torch.int64: torch.from_numpy(np.asarray(a)).to(dev, dt))
        self._bonds = as_t(np.concatenate(bonds).reshape(-1, 2))
        self._bond_rep = as_t(self.bond_replica)
        self._pairs = as_t(np.concatenate(pairs).reshape(-1, 2))
        self._pair_rep = as_t(self.pair_replica)
        self._pair_cut = as_t(np.concatenate(cut), torch.float64)
        cells = np.stack([a.cell.array for a in replicas]).astype(float)
        pbc = np.stack([a.pbc for a in replicas]).astype(float)
        cells[~pbc.any(1)] = np.eye(3)   # molecules: fractional = Cartesian, never wrapped
        inv = np.linalg.inv(cells)
        self._cell = as_t(cells, torch.float64)
        self._inv = as_t(inv, torch.float64)
        self._pbc = as_t(pbc, torch.float64)
        self.periodic = bool(pbc.any())

    def _distances(self, x, ij, rep):
        vec = x[ij[:, 1]] - x[ij[:, 0]]
        if self.periodic:
            frac = torch.einsum("pk,pkl->pl", vec, self._inv[rep])
            frac = frac - torch.round(frac) * self._pbc[rep]
            vec = torch.einsum("pk,pkl->pl", frac, self._cell[rep])
        return torch.sqrt((vec * vec).sum(-1))

    def bond_failures(self, x, running) -> dict:
        """``{replica: details}`` of running replicas with a bond deviating more than the
        criterion's ``max_deviation`` (details as ``StabilityCriteria.check`` gives)."""
        if not len(self._bonds):
            return {}
        r = self._distances(x, self._bonds, self._bond_rep).cpu().numpy()
        dev = np.abs(r - self.ref_lengths)
        out = {}
        limit = np.array([c.max_deviation for c in self.criteria])[self.bond_replica]
        for k in np.unique(self.bond_replica[dev > limit]):
            if not running[k]:
                continue
            lo, hi = self.bond_first[k], self.bond_first[k + 1]
            b = lo + int(np.argmax(dev[lo:hi]))
            out[int(k)] = {"atoms": self.criteria[k].bonds[b - lo].tolist(),
                           "length_A": float(r[b]), "reference_A": float(self.ref_lengths[b])}
        return out

    def new_bonds(self, x, running) -> dict:
        """``{replica: (i, j, distance)}`` of running replicas where two atoms not bonded in
        the reference are within bonding distance (the first such pair)."""
        if not len(self._pairs):
            return {}
        d = self._distances(x, self._pairs, self._pair_rep)
        hit = torch.nonzero(d < self._pair_cut).squeeze(-1).cpu().numpy()
        out = {}
        for p in hit:
            k = int(self.pair_replica[p])
            if running[k] and k not in out:
                i, j = self._pairs[p].cpu().numpy() - self.offsets[k]
                out[k] = (int(i), int(j), float(d[p]))
        return out



class BatchedStability:
    """The ``batched`` engine of :func:`~ffpt_ase.simulate.stability.run_stability`: the unfinished trajectories advance
    together, ``cfg.batch_size`` at a time, in an :class:`~ffpt_ase.simulate.ensemble.
    Ensemble`. The criteria are evaluated on its tensors every ``check_interval`` steps (non-
    finite values after every step); a failed trajectory is recorded at once and frozen while
    the others go on. ``ensemble.pt`` (every ``checkpoint_interval`` steps) holds the batch's
    complete state: a rerun continues it exactly."""

    STATE = "ensemble.pt"

    def __init__(self, run, cfg, reference, calc, criteria, rdf_images, done, show_progress):
        self.run_folder, self.cfg, self.reference, self.calc = run, cfg, reference, calc
        self.criteria, self.rdf_images, self.done = criteria, rdf_images, done
        self.n_steps = int(round(cfg.time_ps * 1000.0 / cfg.timestep_fs))
        self.show_progress = show_progress
        self.rate = None
        self._steps_run, self._wall = 0, 0.0

    def pending(self) -> list:
        return [k for k in range(self.cfg.trajectories) if k not in self.done]

    def run(self) -> None:
        saved = None
        path = self.run_folder.path / self.STATE
        if path.exists():
            try:
                saved = torch.load(path, weights_only=True)
            except Exception as err:
                from ..runfolder import RunFolderError
                raise RunFolderError(f"{path} is damaged ({err}); use --start-over") from err
        total = len(self.pending())
        self.bar = progress(total=total * self.n_steps, unit="replica-step", unit_scale=True,
                            desc="stability", disable=not self.show_progress)
        while True:
            if saved is not None:
                batch = [int(k) for k in saved["indices"]]
            else:
                pending = self.pending()
                if not pending:
                    break
                size = self.cfg.batch_size or len(pending)
                batch = pending[:size]
            self._run_batch(batch, saved)
            saved = None
            path.unlink(missing_ok=True)
        self.bar.close()
        if self._wall > 0:
            self.rate = round(self._steps_run / self._wall, 1)

    # ------------------------------------------------------------------------------------
    def _run_batch(self, batch: list, saved) -> None:
        cfg, run = self.cfg, self.run_folder
        replicas = [self.reference] * len(batch)
        forces = replica_forces(self.calc, replicas)
        ens = Ensemble(replicas, forces, cfg.timestep_fs, cfg.temperature_K,
                       cfg.friction_per_ps, seeds=[[cfg.seed, k] for k in batch])
        checks = BatchCriteria([self.criteria] * len(batch), replicas, forces.offsets,
                               forces.device)
        rdfs = None if self.rdf_images is None else [
            RDFCriterion(self.rdf_images, cfg.rdf_elements, max_error=cfg.rdf_max_error)
            for _ in batch]
        results = [{"trajectory": k, "seed": [cfg.seed, k], "failed": False, "reason": None,
                    "details": {}, "time_to_failure_ps": None, "new_bond": None,
                    "engine": "batched"} for k in batch]
        n_frames = [0] * len(batch)
        if saved is not None:
            ens.load_state_dict(saved["ensemble"])
            results = json.loads(saved["results"])
            n_frames = [int(n) for n in saved["n_frames"]]
            for rdf, state in zip(rdfs or (), saved["rdf"]):
                rdf.load_state_dict(state, self.reference)
            for n, k in enumerate(batch):
                if cfg.save_interval:
                    cut_trajectory(run.path / f"traj_{k:03d}.traj", n_frames[n])
        writers = {}

        def save_frames():
            from ase.io import Trajectory
            for n in np.flatnonzero(ens.running):
                k = batch[n]
                if n not in writers:
                    writers[n] = Trajectory(str(run.path / f"traj_{k:03d}.traj"),
                                            "a" if n_frames[n] else "w")
                writers[n].write(ens.atoms(n))
                n_frames[n] += 1

        def checkpoint():
            with run.atomic(self.STATE) as tmp:
                torch.save({"indices": list(batch), "ensemble": ens.state_dict(),
                            "results": json.dumps(results), "n_frames": list(n_frames),
                            "rdf": [r.state_dict() for r in rdfs or ()]}, tmp)

        def finish(n, reason=None, details=None):
            r = results[n]
            r["simulated_ps"] = ens.time_ps
            if reason is not None:
                r.update(failed=True, reason=reason, time_to_failure_ps=ens.time_ps)
                r["details"].update(details or {})
                ens.freeze(n)
            r["wall_s"] = round(self._wall + time.perf_counter() - t0, 2)
            if batch[n] not in self.done:   # (a resumed batch meets its failures again)
                run.append_line("trajectories.jsonl", json.dumps(r))
                self.done[batch[n]] = r
                log_result(r)

        def check():
            t = ens.time_ps
            x = ens.x
            for n, details in checks.bond_failures(x, ens.running).items():
                finish(n, "bond_deviation", details)
            new = checks.new_bonds(x, ens.running)
            for n, (i, j, d) in new.items():
                if cfg.count_new_bonds:
                    finish(n, "new_bond", {"atoms": [i, j], "distance_A": d})
                elif results[n]["new_bond"] is None:
                    results[n]["new_bond"] = {"time_ps": t, "atoms": [i, j], "distance_A": d}
            for n, rdf in enumerate(rdfs or ()):
                if ens.running[n]:
                    verdict = rdf.add(ens.atoms(n), t)
                    if verdict is not None:
                        finish(n, *verdict)

        t0 = time.perf_counter()
        steps_at_start = ens.step_count
        self.bar.update(steps_at_start * len(batch))
        try:
            if saved is None:
                for n in ens.nonfinite():
                    finish(n, "nonfinite", {"error": "non-finite energy or forces"})
                check()
                if cfg.save_interval:
                    save_frames()
            while ens.step_count < self.n_steps and ens.running.any():
                running = int(ens.running.sum())
                ens.step()
                self._steps_run += running
                step = ens.step_count
                for n in ens.nonfinite():
                    finish(n, "nonfinite", {"error": "non-finite energy, forces or positions"})
                if step % cfg.check_interval == 0:
                    check()
                if cfg.save_interval and step % cfg.save_interval == 0:
                    save_frames()
                if step % cfg.checkpoint_interval == 0:
                    checkpoint()
                self.bar.update(running)
                if step % 50 == 0:
                    wall = self._wall + time.perf_counter() - t0
                    self.bar.set_postfix(refresh=False, running=int(ens.running.sum()),
                                         ns_per_day=f"{ns_per_day(self._steps_run, cfg.timestep_fs, wall):.1f}")
            for n in np.flatnonzero(ens.running):
                finish(n)
        finally:
            for w in writers.values():
                w.close()
        self._wall += time.perf_counter() - t0
