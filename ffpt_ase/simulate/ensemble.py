"""Ensemble MD: N replicas advanced together, one batched model call per step.

The replicas are independent systems (the same or different molecules, periodic or not,
each with its own cell) kept as one flat set of atoms in torch tensors, positions and
velocities in float64. Every step evaluates all running replicas' energies and forces in one
call of the network (:class:`BatchedForces`) instead of one ASE calculator call each; for
molecules of a few atoms that call costs little more than one molecule's, which is what makes
stability statistics and metadynamics walkers affordable.

**Integrator.** Langevin dynamics in the BAOAB splitting (Leimkuhler & Matthews, Appl. Math.
Res. Express 2013, 34; J. Chem. Phys. 138, 174102):

    B  v += dt/2 F/m          A  x += dt/2 v
    O  v  = c1 v + sqrt((1 - c1^2) kT/m) xi,   c1 = exp(-gamma dt),   xi ~ N(0, 1)
    A  x += dt/2 v            (forces at the new x)      B  v += dt/2 F/m

with friction gamma and temperature T per replica; a friction of zero makes it velocity
Verlet (NVE). BAOAB samples configurations with a smaller time-step error than ASE's
``Langevin`` (a different, Vanden-Eijnden-Ciccotti scheme), so trajectories differ from
ASE's step by step while both sample the same ensemble.

**Randomness.** Each replica has its own numpy random generator (seeded with
``[seed, index]`` by the drivers, as their ASE paths are) which draws its start velocities
(ASE's ``thermalize_momenta``) and then its noise, so a replica's trajectory does not depend
on which other replicas share its batch: run alone or among others with the same seed it is
the same trajectory (to float rounding of the batched network).

**Failures.** A replica can be *frozen* (:meth:`Ensemble.freeze`): it keeps its positions
and leaves the batch, while the others go on. Non-finite energies, forces or positions are
found on the tensors after every step (:meth:`Ensemble.nonfinite`); the stability criteria
live with the stability driver.

**State.** :meth:`Ensemble.state_dict` holds everything a continued run needs (positions,
velocities, forces, energies, running flags, step, every generator's state): a run
restored from it continues as if never stopped.

Units at the boundary are ASE's: Angstrom, eV, amu, fs for time steps and K for
temperatures.
"""

from __future__ import annotations

import json

import numpy as np
import torch
from ase import Atoms, units

from ..data.graphs import GraphBatch, periodic_edges, species_index


def _per_replica(value, n: int, name: str) -> np.ndarray:
    """A scalar or a sequence of ``n`` values as an (n,) float array."""
    arr = np.broadcast_to(np.asarray(value, float), (n,)) if np.ndim(value) == 0 \
        else np.asarray(value, float)
    if arr.shape != (n,):
        raise ValueError(f"{name}: give one value or one per replica ({n}), got {arr.shape[0]}")
    return arr.copy()


class _ReplicaLayout:
    """Where each replica's atoms sit in the flat layout: ``sizes`` (N,), ``offsets``
    (N + 1,: first atom of each replica, then the total), ``replica`` (atoms,)."""

    def __init__(self, replicas):
        self.n_replicas = len(replicas)
        self.sizes = np.array([len(a) for a in replicas])
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)])
        self.replica = np.repeat(np.arange(self.n_replicas), self.sizes)


class BatchedForces(_ReplicaLayout):
    """Energies and forces of many replicas in one network call.

    ``calc``: an :class:`~ffpt_ase.calculators.FFPTCalculator` (its models, dtype and device;
    a committee gives the mean); ``replicas``: the ASE ``Atoms`` of every replica (their
    numbers, cells and periodicity; positions come with each call).

    Molecular (non-periodic) replicas get their edges on the device: the candidate pairs of
    each molecule are listed once and every call keeps those closer than the cutoff.
    Periodic replicas get matscipy's neighbour list on the host each call on the CPU, and
    :mod:`~ffpt_ase.data.neighbours` on a GPU.
    """

    def __init__(self, calc, replicas):
        super().__init__(replicas)
        self.models = calc.models
        self.dtype, self.device = calc.dtype, calc.device
        self.cutoff = float(calc.cutoff)
        numbers = [np.asarray(a.numbers) for a in replicas]
        self.numbers = np.concatenate(numbers)
        for k, z in enumerate(numbers):
            try:
                species_index(z, calc.elements)
            except ValueError as err:
                raise ValueError(f"replica {k}: {err}") from None
        self.species = torch.from_numpy(species_index(self.numbers, calc.elements))
        self.periodic = np.array([bool(a.pbc.any()) for a in replicas])
        self.pbc = [np.asarray(a.pbc, bool) for a in replicas]
        self.cells = np.stack([a.cell.array for a in replicas]).astype(float)
        self._layout_key, self._layout = None, None

    # ----------------------------------------------------------------------------- layout
    def _make_layout(self, running: np.ndarray) -> dict:
        """Index tensors for the running replicas (rebuilt only when that set changes)."""
        ids = np.flatnonzero(running)
        atoms = np.concatenate([np.arange(self.offsets[k], self.offsets[k + 1]) for k in ids]) \
            if len(ids) else np.zeros(0, np.int64)
        local = np.concatenate([[0], np.cumsum(self.sizes[ids])])
        pi, pj = [], []
        for n, k in enumerate(ids):
            if not self.periodic[k]:
                i, j = np.triu_indices(self.sizes[k], k=1)
                pi.append(i + local[n])
                pj.append(j + local[n])
        dev = self.device

        def cat(parts):
            return torch.from_numpy(np.concatenate(parts or [np.zeros(0)]).astype(np.int64)
                                    ).to(dev)
        return {
            "ids": ids, "atoms": torch.from_numpy(atoms).to(dev), "local": local,
            "species": self.species[atoms].to(dev),
            "numbers": torch.from_numpy(self.numbers[atoms]).to(dev),
            "graph": torch.from_numpy(np.repeat(np.arange(len(ids)),
                                                self.sizes[ids])).to(dev),
            "cell": torch.from_numpy(self.cells[ids]).to(dev, self.dtype),
            "pair_i": cat(pi), "pair_j": cat(pj),
            "periodic": [(n, k) for n, k in enumerate(ids) if self.periodic[k]],
        }

    def layout(self, running: np.ndarray) -> dict:
        key = running.tobytes()
        if key != self._layout_key:
            self._layout_key, self._layout = key, self._make_layout(running)
        return self._layout

    def _edges(self, lay: dict, pos: torch.Tensor):
        """Half edge list (i < j) and fractional lattice shifts of the running atoms."""
        pi, pj = lay["pair_i"], lay["pair_j"]
        vec = pos[pj] - pos[pi]
        keep = (vec * vec).sum(-1) < self.cutoff ** 2
        ei, ej = pi[keep], pj[keep]
        shift = pos.new_zeros((ei.shape[0], 3))
        if lay["periodic"] and pos.device.type != "cpu":   # on the device, no host copy
            from ..data.neighbours import padded_half_edges
            parts_i, parts_j, parts_s = [ei], [ej], [shift]
            for n, k in lay["periodic"]:
                lo, hi = lay["local"][n], lay["local"][n + 1]
                x = pos[lo:hi].detach().unsqueeze(0)
                _, i, j, S = padded_half_edges(
                    x, torch.ones(x.shape[:2], dtype=torch.bool, device=pos.device),
                    lay["cell"][n:n + 1], torch.as_tensor(self.pbc[k], device=pos.device),
                    self.cutoff)
                parts_i.append(i + lo)
                parts_j.append(j + lo)
                parts_s.append(S.to(pos.dtype))
            ei, ej, shift = torch.cat(parts_i), torch.cat(parts_j), torch.cat(parts_s)
        elif lay["periodic"]:
            host = pos.detach().double().cpu().numpy()
            parts_i, parts_j, parts_s = [ei], [ej], [shift]
            for n, k in lay["periodic"]:
                lo, hi = lay["local"][n], lay["local"][n + 1]
                i, j, S = periodic_edges(host[lo:hi], self.numbers[self.offsets[k]:
                                                                    self.offsets[k + 1]],
                                          self.cells[k], self.pbc[k], self.cutoff)
                parts_i.append(torch.from_numpy(i + lo).to(pos.device))
                parts_j.append(torch.from_numpy(j + lo).to(pos.device))
                parts_s.append(torch.from_numpy(S.astype(float)).to(pos.device, pos.dtype))
            ei, ej, shift = torch.cat(parts_i), torch.cat(parts_j), torch.cat(parts_s)
        return ei, ej, shift

    # ------------------------------------------------------------------------------ call
    def __call__(self, positions: torch.Tensor, running: np.ndarray):
        """``(energy, forces)`` for all replicas: energy (N,) float64 eV (NaN for replicas not
        running), forces (atoms, 3) float64 eV/A (zero for replicas not running).
        ``positions``: (atoms, 3) float64 Angstrom, all replicas; ``running``: (N,) bool."""
        energy = torch.full((self.n_replicas,), float("nan"), dtype=torch.float64,
                            device=positions.device)
        forces = torch.zeros_like(positions)
        lay = self.layout(running)
        if not len(lay["ids"]):
            return energy, forces
        pos = positions[lay["atoms"]].to(self.dtype)
        ei, ej, shift = self._edges(lay, pos)
        batch = GraphBatch(species=lay["species"], numbers=lay["numbers"], positions=pos,
                           graph=lay["graph"], edge_i=ei, edge_j=ej, shift_frac=shift,
                           cell=lay["cell"], n_graphs=len(lay["ids"]))
        e_sum, f_sum = 0.0, 0.0
        for model in self.models:
            out = model(batch, forces=True)
            e_sum = e_sum + out["energy"].detach()
            f_sum = f_sum + out["forces"].detach().double()
        n = len(self.models)
        ids = torch.from_numpy(lay["ids"]).to(positions.device)
        energy[ids] = e_sum / n
        forces[lay["atoms"]] = f_sum / n
        return energy, forces


class CalculatorForces(_ReplicaLayout):
    """Energies and forces of many replicas from any ASE calculator, one call per running
    replica (the interface of :class:`BatchedForces` for calculators that cannot batch:
    the teachers, a user's own). Runs on the CPU."""

    def __init__(self, calc, replicas):
        super().__init__(replicas)
        self.calc = calc
        self.device = torch.device("cpu")
        self.replicas = [a.copy() for a in replicas]

    def __call__(self, positions: torch.Tensor, running: np.ndarray):
        energy = torch.full((self.n_replicas,), float("nan"), dtype=torch.float64)
        forces = torch.zeros_like(positions)
        host = positions.detach().cpu().numpy()
        for k in np.flatnonzero(running):
            a = self.replicas[k]
            sl = slice(self.offsets[k], self.offsets[k + 1])
            a.positions = host[sl]
            a.calc = self.calc
            try:
                energy[k] = float(a.get_potential_energy())
                forces[sl] = torch.from_numpy(np.asarray(a.get_forces(), float))
            except (ValueError, FloatingPointError, RuntimeError):
                forces[sl] = float("nan")   # reported as a non-finite failure
        return energy, forces


def replica_forces(calc, replicas):
    """:class:`BatchedForces` for an ``FFPTCalculator``, :class:`CalculatorForces` for
    any other ASE calculator."""
    from ..calculators import FFPTCalculator
    if isinstance(calc, FFPTCalculator):
        return BatchedForces(calc, replicas)
    return CalculatorForces(calc, replicas)


class Ensemble:
    """N replicas under Langevin (BAOAB) or NVE dynamics; see the module docstring.

    ``replicas``: ASE ``Atoms`` (their momenta are used when ``thermalize=False``);
    ``forces``: a :class:`BatchedForces` or :class:`CalculatorForces` for them, or an ASE
    calculator (wrapped by :func:`replica_forces`);
    ``timestep_fs``; ``temperature_K`` and ``friction_per_ps``: one value or one per replica
    (friction 0: NVE); ``seeds``: one seed per replica (anything ``numpy.random.default_rng``
    takes), drawing start velocities at ``temperature_K`` (``thermalize=True``) and the
    thermostat noise; ``bias``: optional callable ``bias(step, positions, energy, forces,
    running)`` that adds a bias (e.g. PLUMED's) to energy (N,) and forces in place.
    """

    def __init__(self, replicas, forces, timestep_fs: float, temperature_K=300.0,
                 friction_per_ps=0.0, seeds=None, thermalize: bool = True, bias=None):
        replicas = [a.copy() for a in replicas]
        if not replicas:
            raise ValueError("an ensemble needs at least one replica")
        n = len(replicas)
        if not isinstance(forces, _ReplicaLayout):
            forces = replica_forces(forces, replicas)
        self.forces_of = forces
        self.device = forces.device
        if not timestep_fs > 0:
            raise ValueError(f"timestep must be > 0 fs, got {timestep_fs}")
        self.timestep_fs = float(timestep_fs)
        self.temperature_K = _per_replica(temperature_K, n, "temperature_K")
        self.friction_per_ps = _per_replica(friction_per_ps, n, "friction_per_ps")
        if (self.temperature_K < 0).any() or (self.friction_per_ps < 0).any():
            raise ValueError("temperatures and frictions must be >= 0")
        seeds = list(range(n)) if seeds is None else list(seeds)
        if len(seeds) != n:
            raise ValueError(f"give one seed per replica ({n}), got {len(seeds)}")
        self.rngs = [np.random.default_rng(s) for s in seeds]
        if thermalize:
            from ase.md.velocitydistribution import thermalize_momenta
            for a, rng, t in zip(replicas, self.rngs, self.temperature_K):
                thermalize_momenta(a, temperature_K=t, rng=rng)
        self.replicas = replicas
        self.n_replicas = n
        self.offsets = forces.offsets
        self.replica_of_atom = torch.from_numpy(forces.replica).to(self.device)
        dev, f64 = self.device, torch.float64
        masses = np.concatenate([a.get_masses() for a in replicas])
        self.masses = torch.from_numpy(masses).to(dev, f64).unsqueeze(-1)
        self.x = torch.from_numpy(np.concatenate([a.positions for a in replicas])).to(dev, f64)
        self.v = torch.from_numpy(np.concatenate([a.get_velocities() for a in replicas])
                                  ).to(dev, f64)
        self.running = np.ones(n, bool)
        self.step_count = 0
        self.bias = bias
        dt = self.timestep_fs * units.fs
        gamma = self.friction_per_ps / (1000.0 * units.fs)
        c1 = np.exp(-gamma * dt)
        atom_c1 = np.repeat(c1, forces.sizes)
        kT = np.repeat(units.kB * self.temperature_K, forces.sizes)
        self.c1 = torch.from_numpy(atom_c1).to(dev, f64).unsqueeze(-1)
        self.c2 = torch.from_numpy(np.sqrt((1 - atom_c1 ** 2) * kT / masses)).to(dev, f64
                                                                                  ).unsqueeze(-1)
        self.thermostat = bool((self.friction_per_ps > 0).any())
        self.half_dt = 0.5 * dt
        self._noise = np.zeros((len(masses), 3))
        self.energy, self.f = self._evaluate(self.x)

    # ------------------------------------------------------------------------- dynamics
    def _evaluate(self, x):
        energy, forces = self.forces_of(x, self.running)
        if self.bias is not None:
            self.bias(self.step_count, x, energy, forces, self.running)
        return energy, forces

    def _draw_noise(self) -> torch.Tensor:
        noise = self._noise
        for k in np.flatnonzero(self.running):
            self.rngs[k].standard_normal(out=noise[self.offsets[k]:self.offsets[k + 1]])
        return torch.from_numpy(noise).to(self.device)

    def step(self) -> None:
        """One BAOAB step of every running replica (frozen ones stay where they are)."""
        h = self.half_dt
        v = self.v + h * self.f / self.masses
        x = self.x + h * v
        if self.thermostat:   # (frozen replicas: v = 0 and noise = 0, so they stay put)
            v = self.c1 * v + self.c2 * self._draw_noise()
        x = x + h * v
        self.step_count += 1
        try:
            energy, f = self._evaluate(x)
        except BaseException:
            self.step_count -= 1   # (e.g. Ctrl-C) the state stays the last complete step's
            raise
        self.x, self.energy, self.f = x, energy, f
        self.v = v + h * f / self.masses

    def run(self, steps: int) -> None:
        for _ in range(int(steps)):
            self.step()

    # ------------------------------------------------------------------------- replicas
    def freeze(self, k: int) -> None:
        """Take replica ``k`` out of the dynamics: it keeps its positions, its velocities,
        forces and noise are zeroed (they may be non-finite), it is no longer evaluated."""
        self.running[k] = False
        sl = slice(self.offsets[k], self.offsets[k + 1])
        self.v[sl] = 0.0
        self.f[sl] = 0.0
        self._noise[sl] = 0.0   # its generator draws no more: the slot must not keep a draw

    def nonfinite(self) -> np.ndarray:
        """Indices of running replicas with a non-finite energy, force or position."""
        bad_atom = ~(torch.isfinite(self.x).all(-1) & torch.isfinite(self.f).all(-1)
                     & torch.isfinite(self.v).all(-1))
        bad = torch.zeros(self.n_replicas, dtype=torch.bool, device=self.device)
        bad.index_put_((self.replica_of_atom,), bad_atom, accumulate=True)
        bad |= ~torch.isfinite(self.energy)
        return np.flatnonzero(bad.cpu().numpy() & self.running)

    def kinetic_energy(self) -> np.ndarray:
        """Kinetic energy of every replica (eV), (N,)."""
        ke = 0.5 * (self.masses * self.v * self.v).sum(-1)
        out = torch.zeros(self.n_replicas, dtype=torch.float64, device=self.device)
        return out.index_add(0, self.replica_of_atom, ke).cpu().numpy()

    def temperature(self) -> np.ndarray:
        """Kinetic temperature of every replica (K, 3 degrees of freedom per atom, as ASE's
        ``Atoms.get_temperature`` counts them), (N,)."""
        return 2 * self.kinetic_energy() / (3 * self.forces_of.sizes * units.kB)

    def positions_of(self, k: int) -> np.ndarray:
        return self.x[self.offsets[k]:self.offsets[k + 1]].cpu().numpy().copy()

    def atoms(self, k: int) -> Atoms:
        """Replica ``k`` as ASE ``Atoms`` with its momenta, and its energy and forces (eV,
        eV/A, bias included) on a single-point calculator."""
        from ase.calculators.singlepoint import SinglePointCalculator
        sl = slice(self.offsets[k], self.offsets[k + 1])
        a = self.replicas[k].copy()
        a.positions = self.x[sl].cpu().numpy()
        a.set_velocities(self.v[sl].cpu().numpy())
        a.calc = SinglePointCalculator(a, energy=float(self.energy[k]),
                                       forces=self.f[sl].cpu().numpy())
        return a

    @property
    def time_ps(self) -> float:
        return self.step_count * self.timestep_fs * 1e-3

    # ----------------------------------------------------------------------------- state
    def state_dict(self) -> dict:
        """Everything a continued run needs (tensors and plain values only: the file
        loads with ``weights_only=True``)."""
        return {"step": self.step_count, "positions": self.x.cpu().clone(),
                "velocities": self.v.cpu().clone(), "forces": self.f.cpu().clone(),
                "energy": self.energy.cpu().clone(),
                "running": torch.from_numpy(self.running.copy()),
                "rng": [json.dumps(r.bit_generator.state) for r in self.rngs],
                "n_atoms": torch.from_numpy(self.forces_of.sizes.copy())}

    def load_state_dict(self, state: dict) -> None:
        if not torch.equal(state["n_atoms"], torch.from_numpy(self.forces_of.sizes)):
            raise ValueError("the saved ensemble state belongs to other replicas")
        dev = self.device
        self.step_count = int(state["step"])
        self.x = state["positions"].to(dev, torch.float64)
        self.v = state["velocities"].to(dev, torch.float64)
        self.f = state["forces"].to(dev, torch.float64)
        self.energy = state["energy"].to(dev, torch.float64)
        self.running = state["running"].numpy().astype(bool).copy()
        self._noise[:] = 0.0
        for r, s in zip(self.rngs, state["rng"]):
            r.bit_generator.state = json.loads(s)


def state_to_json(state: dict) -> dict:
    """An :meth:`Ensemble.state_dict` as JSON-able values (tensors as dtype + nested
    lists; float64 values round-trip exactly through Python's JSON)."""
    return {k: {"dtype": str(v.dtype).removeprefix("torch."), "data": v.tolist()}
            if isinstance(v, torch.Tensor) else v for k, v in state.items()}


def state_from_json(state: dict) -> dict:
    """The inverse of :func:`state_to_json`."""
    return {k: torch.tensor(v["data"], dtype=getattr(torch, v["dtype"]))
            if isinstance(v, dict) and set(v) == {"dtype", "data"} else v
            for k, v in state.items()}
