"""Well-tempered metadynamics of a combustion channel through ASE + PLUMED.

``run_metadynamics`` runs Langevin dynamics (300 K, friction 20/ps, 0.2 fs steps by
default) with an ML calculator wrapped by ``ase.calculators.plumed.Plumed`` and the
channel's deck from ``plumed_inputs/``. The output folder gets

    HILLS, COLVAR        PLUMED's files (the deck's FILE= names, redirected here)
    trajectory.traj      ASE trajectory with momenta, every ``traj_interval`` steps
    state.json           steps done (the restart point) and run settings
    events.jsonl         unphysical events, one JSON line each, written as they happen
    plumed.log, plumed.dat, summary.json

Running it again on the same folder continues from the last trajectory frame: HILLS and
COLVAR rows written after that point are dropped, PLUMED restarts (RESTART semantics:
it reads the hills so far and appends), and the step counter continues.

**The thermostat must carry away what the hills deposit.** Each hill adds up to 5 kJ/mol
of potential energy every 100 steps (20 fs), which the dynamics turns into heat. A gas-phase
complex of 3-6 atoms holds about 11-22 kJ/mol of kinetic energy at 300 K, so a weak bath
cannot keep it at the temperature the well-tempered bias assumes: with the paper's stated
friction of 0.2/ps (a 5 ps relaxation time) a channel-09 run's 1-ps mean temperature was
2,855 K in its second ps and 8,783 K in its eighth (measured; O2 then splits whatever the
model), with 20/ps it stayed at 308-371 K over 5 ps. The default is therefore 20/ps (``--friction 0.2`` gives the paper's
setting). The driver measures the kinetic temperature, reports its 1-ps means in
``summary.json`` and warns when one exceeds 1.5 times the target.

Unphysical events are checked every ``check_interval`` steps: two atoms closer than half
the sum of their covalent radii, or a molecular fragment (bonds: 1.25 x covalent radii)
that is neither a reactant nor a product of the channel nor the complex of all atoms
(e.g. O + OH from HO2 in channel 09). They are reported, and stop the run only if asked.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from ase import Atoms, units

from ..forcefields.topology import colliding_pairs, fragment_formulas_from_distances
from ..progress import progress
from .channels import get_channel, reactant_complex
from .md import StopRun, langevin
from .decks import HEIGHT_KJMOL, deck_name, metad_height_kjmol

log = logging.getLogger(__name__)


class PlumedNotAvailable(RuntimeError):
    pass


def require_plumed():
    """Import PLUMED's Python module and create a kernel, or explain how to install one."""
    try:
        import plumed
        plumed.Plumed()
    except Exception as err:  # ImportError, or the wrapper failing to load the kernel
        raise PlumedNotAvailable(
            "PLUMED is not usable here: the `plumed` Python module needs a PLUMED kernel "
            "(libplumedKernel.so). Install one with `pip install --no-deps hillclimber` (it "
            "ships the kernel and sets PLUMED_KERNEL), or point PLUMED_KERNEL at your own "
            f"build. Original error: {err}") from err
    return plumed


def find_deck(cid, deck: str | Path | None = None) -> Path:
    """The deck file: an explicit path, the repository's ``plumed_inputs/``, or the copy
    installed under ``<prefix>/share/ffpt-ase/plumed_inputs``."""
    if deck is not None:
        path = Path(deck)
        if not path.exists():
            raise FileNotFoundError(f"PLUMED deck not found: {path}")
        return path
    name = deck_name(cid)
    candidates = [Path(__file__).resolve().parents[2] / "plumed_inputs" / name,
                  Path(sys.prefix) / "share" / "ffpt-ase" / "plumed_inputs" / name]
    for c in candidates:
        if c.exists():
            return c
    raise FileNotFoundError(f"PLUMED deck {name} not found in {[str(c) for c in candidates]}")


def deck_lines(path: Path, output: Path) -> list:
    """Deck actions, one per line, with comments removed (PLUMED's ``readInputLine`` takes
    actions only) and relative FILE= names redirected into ``output``."""
    def fix(match):
        name = match.group(1)
        return f"FILE={name if Path(name).is_absolute() else output / name}"
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [re.sub(r"FILE=(\S+)", fix, line) for line in lines if line]


def truncate_plumed_file(path: Path, t_cut: float, keep_at_cut: bool = False) -> int:
    """Drop data rows written after ``t_cut`` (time = first column); returns how many.

    On restart from a checkpoint at step n, PLUMED evaluates step n again. It PRINTs on that
    step (so COLVAR rows at t_cut must go: ``keep_at_cut=False``) but METAD never deposits a
    hill on the first step of a run (so the HILLS row at t_cut must stay: ``keep_at_cut=True``).
    """
    if not path.exists():
        return 0
    keep, dropped = [], 0
    limit = t_cut + 1e-6 if keep_at_cut else t_cut - 1e-6
    for line in path.read_text().splitlines(keepends=True):
        if line.startswith("#") or not line.strip():
            keep.append(line)
            continue
        if float(line.split()[0]) < limit:
            keep.append(line)
        else:
            dropped += 1
    path.write_text("".join(keep))
    return dropped


def set_metad_temperature(lines: list, temperature_K: float, source="deck") -> list:
    """Deck lines with METAD's TEMP set to the MD temperature (K).

    Well-tempered metadynamics scales its hills with TEMP; a TEMP that is not the
    thermostat's makes the bias and the free energy wrong. A deck that states another
    TEMP gets the run's (with a warning); one that states none gets it added.
    """
    out = []
    for line in lines:
        words = line.split()
        if "METAD" in words:
            temps = [w for w in words if w.upper().startswith("TEMP=")]
            for w in temps:
                if abs(float(w.split("=", 1)[1]) - temperature_K) > 1e-9:
                    log.warning("%s: METAD %s, the MD runs at %g K: the run uses TEMP=%g", source,
                                w, temperature_K, temperature_K)
            words = [w for w in words if not w.upper().startswith("TEMP=")] + \
                [f"TEMP={temperature_K:g}"]
            line = " ".join(words)
        out.append(line)
    return out


class TemperatureMonitor:
    """Kinetic temperature (K) every check, averaged over windows of ``window_ps``; warns
    once when a window's mean exceeds ``limit`` times the target (the hills heat the system
    faster than the thermostat cools it: raise the friction)."""

    def __init__(self, target_K: float, window_ps: float = 1.0, limit: float = 1.5):
        self.target, self.window_ps, self.limit = target_K, window_ps, limit
        self.window_means, self._current, self._window = [], [], 0
        self._span = [0.0, 0.0]   # first and last time (ps) of the current window
        self.warned = False

    def add(self, atoms: Atoms, time_ps: float) -> None:
        window = int(time_ps // self.window_ps)
        if window != self._window and self._current:
            self._close()
        if not self._current:
            self._span[0] = time_ps
        self._window = window
        self._span[1] = time_ps
        self._current.append(atoms.get_temperature())

    def _close(self):
        mean = float(np.mean(self._current))
        self.window_means.append(round(mean, 1))
        self._current = []
        if mean > self.limit * self.target and not self.warned:
            self.warned = True
            log.warning("the kinetic temperature averaged %.0f K over a %.1f ps window, %.1f "
                        "times the target %.0f K: the hills heat the system faster than the "
                        "thermostat cools it (raise --friction)", mean, self.window_ps,
                        mean / self.target, self.target)

    def summary(self) -> dict:
        """Window means; a trailing window shorter than half ``window_ps`` (the last step's
        check, say) is not a window mean and is left out."""
        if self._current and self._span[1] - self._span[0] >= 0.5 * self.window_ps:
            self._close()
        means = self.window_means
        return {"temperature_target_K": self.target,
                "temperature_window_means_K": means,
                "temperature_max_window_mean_K": max(means) if means else None,
                "overheated": bool(means and max(means) > self.limit * self.target)}

    @property
    def last(self) -> float:
        return float(np.mean(self._current)) if self._current else float("nan")


class UnphysicalMonitor:
    """Flags frames the channel's chemistry calls unphysical (:meth:`Channel.classify`:
    colliding atoms, or a fragment that is no reactant, product or the whole complex)."""

    def __init__(self, channel, events_file: Path | None = None):
        self.channel = channel
        self.events_file = events_file
        self.checked = 0
        self.flagged = 0

    def check(self, atoms: Atoms, step: int) -> list:
        d = atoms.get_all_distances()
        events = []
        if self.channel.classify(d[None])[0] == "unphysical":
            for i, j in np.argwhere(colliding_pairs(atoms.numbers, d)[0]):
                events.append({"step": step, "type": "atoms_too_close",
                               "atoms": [int(i), int(j)], "distance_A": round(float(d[i, j]), 4)})
            formulas = list(fragment_formulas_from_distances(atoms.numbers, d[None])[0])
            bad = sorted(f for f in formulas if f not in self.channel.allowed_species)
            if bad:
                events.append({"step": step, "type": "unphysical_species",
                               "fragments": formulas, "not_allowed": bad})
        self.checked += 1
        self.flagged += bool(events)
        if events and self.events_file is not None:
            with open(self.events_file, "a") as fh:
                for e in events:
                    fh.write(json.dumps(e) + "\n")
        return events

    @property
    def fraction_flagged(self) -> float:
        return self.flagged / self.checked if self.checked else 0.0


def ns_per_day(steps: int, timestep_fs: float, wall_s: float) -> float:
    """Simulated nanoseconds per day of wall time."""
    return steps * timestep_fs * 1e-6 / max(wall_s, 1e-9) * 86400.0


@dataclass
class MetadConfig:
    reaction: str
    model: object = None              # checkpoint path(s) for FFPTCalculator
    steps: int = 10000
    seed: int = 0
    output: str = "runs/metad"
    start: str | None = None          # structure file in the channel's atom order
    temperature_K: float = 300.0
    friction_per_ps: float = 20.0     # see the module docstring: 0.2/ps overheats
    timestep_fs: float = 0.2
    traj_interval: int = 100
    check_interval: int = 10
    stop_on_unphysical: bool = False
    deck: str | None = None
    dtype: str = "float32"
    compile: bool = False
    threads: int = 1                  # torch threads; 1 is fastest for a few atoms and
                                      # avoids oversubscription when runs share a machine


def _start_geometry(cfg: MetadConfig, channel) -> Atoms:
    if cfg.start is None:
        return reactant_complex(channel.id)
    from ase.io import read
    atoms = read(cfg.start, index=-1)
    if list(atoms.get_chemical_symbols()) != list(channel.symbols):
        raise ValueError(f"{cfg.start} has atoms {atoms.get_chemical_symbols()}, channel "
                         f"{channel.id} needs {list(channel.symbols)} in this order")
    return atoms


def run_metadynamics(cfg: MetadConfig, calc=None, show_progress: bool = True) -> dict:
    """Run (or continue) well-tempered metadynamics; returns the summary dictionary."""
    from ase.calculators.plumed import Plumed
    from ase.io import Trajectory
    from ase.md.velocitydistribution import thermalize_momenta

    if not cfg.temperature_K > 0 or not cfg.timestep_fs > 0 or cfg.steps < 0 \
            or not cfg.friction_per_ps >= 0:
        raise ValueError(f"metadynamics needs temperature > 0 K, timestep > 0 fs, friction >= 0 "
                         f"and steps >= 0 (got {cfg.temperature_K} K, {cfg.timestep_fs} fs, "
                         f"{cfg.friction_per_ps} /ps, {cfg.steps} steps)")
    require_plumed()
    if cfg.threads:
        import torch
        torch.set_num_threads(cfg.threads)
    channel = get_channel(cfg.reaction)
    out = Path(cfg.output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    deck = find_deck(channel.id, cfg.deck)
    lines = set_metad_temperature(deck_lines(deck, out), cfg.temperature_K, deck)
    (out / "plumed.dat").write_text("\n".join(lines) + "\n")
    height = metad_height_kjmol(lines)
    if height is not None and abs(height - HEIGHT_KJMOL) > 1e-6:
        log.warning("%s deposits hills of %.4g kJ/mol, not the protocol's %g kJ/mol (check its "
                    "UNITS ENERGY and HEIGHT)", deck, height, HEIGHT_KJMOL)
    if calc is None:
        if cfg.model is None:
            raise ValueError("give a model checkpoint (--model) or a calculator")
        from ..calculators import FFPTCalculator
        calc = FFPTCalculator(cfg.model, dtype=cfg.dtype, compile=cfg.compile)

    state_file, traj_file = out / "state.json", out / "trajectory.traj"
    dt = cfg.timestep_fs
    state = json.loads(state_file.read_text()) if state_file.exists() else None
    resuming = bool(state and state["steps_done"] > 0 and traj_file.exists())
    if resuming:
        with Trajectory(str(traj_file)) as tr:
            last = tr[-1]
        atoms = Atoms(last.get_chemical_symbols(), positions=last.positions,
                      momenta=last.get_momenta())
        steps_done = int(state["steps_done"])
        for name, keep in (("HILLS", True), ("COLVAR", False)):
            dropped = truncate_plumed_file(out / name, steps_done * dt, keep_at_cut=keep)
            if dropped:
                log.info("restart: dropped %d %s rows after step %d", dropped, name, steps_done)
        n_restarts = int(state.get("restarts", 0)) + 1
        log.info("resuming %s at step %d", out, steps_done)
    else:
        atoms = _start_geometry(cfg, channel)
        steps_done, n_restarts = 0, 0
        thermalize_momenta(atoms, temperature_K=cfg.temperature_K,
                           rng=np.random.default_rng([cfg.seed, 0]))
        for name in ("HILLS", "COLVAR", "events.jsonl"):
            (out / name).unlink(missing_ok=True)
    remaining = cfg.steps - steps_done
    monitor = UnphysicalMonitor(channel, out / "events.jsonl")
    if resuming:  # a fresh run starts new counts (its old events.jsonl was removed)
        monitor.checked, monitor.flagged = state.get("checked", 0), state.get("flagged", 0)
    thermometer = TemperatureMonitor(cfg.temperature_K)
    stopped_early = None
    t0 = time.perf_counter()
    timestep = dt * units.fs
    with Plumed(calc, lines, timestep, atoms=atoms, kT=units.kB * cfg.temperature_K,
                log=str(out / "plumed.log"), restart=resuming) as pcalc:
        pcalc.istep = steps_done
        atoms.calc = pcalc
        dyn = langevin(atoms, dt, cfg.temperature_K, cfg.friction_per_ps,
                       np.random.default_rng([cfg.seed, 1 + n_restarts]))
        traj = Trajectory(str(traj_file), "a" if resuming else "w", atoms)
        bar = progress(total=cfg.steps, initial=steps_done, unit="step",
                       desc=f"metad rxn{channel.id}", disable=not show_progress)

        def checkpoint():
            traj.write(atoms)
            state_file.write_text(json.dumps({
                "steps_done": steps_done + dyn.nsteps, "restarts": n_restarts,
                "checked": monitor.checked, "flagged": monitor.flagged,
                "config": {k: (str(v) if k == "model" else v) for k, v in asdict(cfg).items()}},
                indent=1))

        def check():
            nonlocal stopped_early
            thermometer.add(atoms, (steps_done + dyn.nsteps) * dt * 1e-3)
            events = monitor.check(atoms, steps_done + dyn.nsteps)
            if events and cfg.stop_on_unphysical:
                stopped_early = events[0]
                raise StopRun

        def tick():
            bar.set_postfix(ns_per_day=f"{ns_per_day(dyn.nsteps, dt, time.perf_counter() - t0):.2f}",
                            T=f"{thermometer.last:.0f}K",
                            unphysical=f"{monitor.fraction_flagged:.3f}", refresh=False)
            bar.update(steps_done + dyn.nsteps - bar.n)  # ASE also calls at step 0

        dyn.attach(check, interval=cfg.check_interval)
        dyn.attach(tick, interval=cfg.check_interval)
        dyn.attach(checkpoint, interval=cfg.traj_interval)
        interrupted = True
        try:
            if remaining > 0:
                dyn.run(remaining)
            interrupted = False
        except StopRun:
            interrupted = False
            log.warning("stopped on an unphysical event: %s", stopped_early)
        finally:
            bar.close()
            # after a clean end (or a requested stop) record the final point; after Ctrl-C
            # or a crash the last regular checkpoint stays the restart point
            if not interrupted and dyn.nsteps % cfg.traj_interval:
                checkpoint()
            traj.close()
    elapsed = time.perf_counter() - t0
    done = steps_done + dyn.nsteps
    summary = {"reaction": channel.id, "equation": channel.reaction, "steps": done,
               "simulated_ps": done * dt * 1e-3, "wall_s_this_run": round(elapsed, 2),
               "ns_per_day": ns_per_day(dyn.nsteps, dt, elapsed),
               "hill_height_kJ_per_mol": height, "deck": str(deck),
               "unphysical_fraction": monitor.fraction_flagged, "checked_frames": monitor.checked,
               "friction_per_ps": cfg.friction_per_ps, **thermometer.summary(),
               "stopped_on": stopped_early, "output": str(out),
               "files": {k: str(out / k) for k in ("HILLS", "COLVAR", "trajectory.traj",
                                                     "events.jsonl")}}
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary
