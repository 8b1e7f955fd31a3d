"""Well-tempered metadynamics of any system through ASE + PLUMED.

``run_metadynamics`` runs Langevin dynamics (300 K, friction 20/ps, 0.2 fs steps by
default) with an ML calculator wrapped by ``ase.calculators.plumed.Plumed`` and a PLUMED
deck (any deck: the driver knows no chemistry; the hydrogen-combustion application wraps it
with its channels' decks and monitor). The output folder gets

    HILLS, COLVAR        PLUMED's files (the deck's FILE= names, redirected here)
    trajectory.traj      ASE trajectory with momenta, every ``traj_interval`` steps
    state.json           steps done (the restart point), run settings, observer counters
    events.jsonl         the observers' events, one JSON line each, written as they happen
    plumed.log, plumed.dat, summary.json

Running it again on the same folder continues from the last trajectory frame: HILLS and
COLVAR rows written after that point are dropped, PLUMED restarts (RESTART semantics:
it reads the hills so far and appends), and the step counter continues.

**Units.** ASE's PLUMED wrapper hands PLUMED energies in kJ/mol, lengths in nm and times in
ps unless the deck declares ``UNITS``; a deck without ``UNITS LENGTH=A`` is read in nm, and
the driver warns.

**The thermostat must carry away what the hills deposit.** Each hill adds up to 5 kJ/mol
of potential energy every 100 steps (20 fs), which the dynamics turns into heat. A gas-phase
complex of 3-6 atoms holds about 11-22 kJ/mol of kinetic energy at 300 K, so a weak bath
cannot keep it at the temperature the well-tempered bias assumes: with the paper's stated
friction of 0.2/ps (a 5 ps relaxation time) a channel-09 run's 1-ps mean temperature was
2,855 K in its second ps and 8,783 K in its eighth (measured; O2 then splits whatever the
model), with 20/ps it stayed at 308-371 K over 5 ps. The default is therefore 20/ps
(``--friction 0.2`` gives the paper's setting). A :class:`TemperatureMonitor` observer
reports 1-ps mean kinetic temperatures in ``summary.json`` and warns above 1.5x the target.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from ase import Atoms, units

from ..files import atomic_path
from ..progress import progress
from ..runtime import set_threads
from ..settings import redefault, setting
from .md import MDSettings, StopRun, langevin
from .observers import TemperatureMonitor

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


_ENERGY_UNITS_KJMOL = {"kj/mol": 1.0, "kcal/mol": 4.184, "ev": 96.48533212, "j/mol": 1e-3}


def metad_height_kjmol(lines) -> float | None:
    """HEIGHT of the deck's METAD converted to kJ/mol with its UNITS line.

    The trap this guards against: PLUMED reads HEIGHT in the deck's ENERGY unit, so a deck
    that switches to ``ENERGY=eV`` but keeps ``HEIGHT=5`` deposits 482 kJ/mol hills.
    """
    unit, height = "kj/mol", None
    for line in lines:
        line = line.split("#", 1)[0]
        words = line.split()
        if words and words[0] == "UNITS":
            for w in words[1:]:
                if w.upper().startswith("ENERGY="):
                    unit = w.split("=", 1)[1].lower()
        if "METAD" in words:
            for w in words:
                if w.upper().startswith("HEIGHT="):
                    height = float(w.split("=", 1)[1])
    if height is None:
        return None
    if unit not in _ENERGY_UNITS_KJMOL:
        raise ValueError(f"unknown PLUMED energy unit {unit!r}")
    return height * _ENERGY_UNITS_KJMOL[unit]


def ns_per_day(steps: int, timestep_fs: float, wall_s: float) -> float:
    """Simulated nanoseconds per day of wall time."""
    return steps * timestep_fs * 1e-6 / max(wall_s, 1e-9) * 86400.0


def declares_units(lines) -> bool:
    """Whether deck lines declare PLUMED ``UNITS``."""
    return any(line.split() and line.split()[0].upper() == "UNITS" for line in lines)


@dataclass(kw_only=True)
class MetadConfig(MDSettings):
    """Settings of a metadynamics run (flags of ``ffpt-ase metad``)."""

    deck: str | None = setting(None, "PLUMED input file")
    start: str | None = setting(None, "start structure file (its last frame)")
    steps: int = setting(10000, "MD steps in all (a resumed run continues to this count)")
    output: str = redefault(MDSettings, "output", "runs/metad")
    friction_per_ps: float = redefault(MDSettings, "friction_per_ps", 20.0)  # 0.2/ps overheats
    timestep_fs: float = redefault(MDSettings, "timestep_fs", 0.2)
    traj_interval: int = setting(100, "steps between saved frames (the restart points)")
    check_interval: int = setting(10, "steps between observer checks")
    stop_on_event: bool = setting(False, "stop at the first event an observer reports")
    compile: bool = setting(False, "torch.compile the network (about a minute once)")

    def __post_init__(self):
        if not self.temperature_K > 0 or not self.timestep_fs > 0 or self.steps < 0 \
                or not self.friction_per_ps >= 0 or self.traj_interval < 1 \
                or self.check_interval < 1:
            raise ValueError(
                f"metadynamics needs temperature > 0 K, timestep > 0 fs, friction >= 0, "
                f"steps >= 0 and intervals >= 1 (got {self.temperature_K} K, "
                f"{self.timestep_fs} fs, {self.friction_per_ps} /ps, {self.steps} steps, "
                f"intervals {self.traj_interval}/{self.check_interval})")


def read_start(path: str | Path) -> Atoms:
    """The last frame of a structure file (any ASE format)."""
    from ase.io import read
    if not Path(path).exists():
        raise FileNotFoundError(f"start structure not found: {path}")
    return read(path, index=-1)


def run_metadynamics(cfg: MetadConfig, atoms: Atoms | None = None, calc=None,
                     observers=(), record: dict | None = None,
                     show_progress: bool = True) -> dict:
    """Run (or continue) well-tempered metadynamics; returns the summary dictionary.

    ``atoms``: the start of a fresh run (default: ``cfg.start``); ``calc``: the ML
    calculator (default: ``cfg.model`` read by :class:`FFPTCalculator`); ``observers``:
    :class:`~ffpt_ase.simulate.observers.Observer` objects called every ``check_interval``
    steps (a temperature monitor is always added); ``record``: facts about the run (e.g. the
    application and reaction) stored in ``state.json`` and the summary.
    """
    from ase.calculators.plumed import Plumed
    from ase.io import Trajectory
    from ase.md.velocitydistribution import thermalize_momenta

    if cfg.deck is None:
        raise ValueError("give a PLUMED deck (--deck FILE)")
    deck = Path(cfg.deck)
    if not deck.exists():
        raise FileNotFoundError(f"PLUMED deck not found: {deck}")
    require_plumed()
    set_threads(cfg.threads)
    out = Path(cfg.output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    lines = set_metad_temperature(deck_lines(deck, out), cfg.temperature_K, deck)
    if not declares_units(lines):
        log.warning("%s declares no UNITS: PLUMED reads its lengths in nm, energies in kJ/mol "
                    "and times in ps (add e.g. `UNITS LENGTH=A ENERGY=kj/mol TIME=fs`)", deck)
    (out / "plumed.dat").write_text("\n".join(lines) + "\n")
    height = metad_height_kjmol(lines)
    if calc is None:
        if cfg.model is None:
            raise ValueError("give a model checkpoint (--model) or a calculator")
        from ..calculators import FFPTCalculator
        calc = FFPTCalculator.from_checkpoints(cfg.model, dtype=cfg.dtype, compile=cfg.compile)
    thermometer = TemperatureMonitor(cfg.temperature_K)
    observers = [thermometer, *observers]
    names = [o.name for o in observers]
    if len(set(names)) != len(names):
        raise ValueError(f"observers need distinct names, got {names}")

    state_file, traj_file = out / "state.json", out / "trajectory.traj"
    dt = cfg.timestep_fs
    state = json.loads(state_file.read_text()) if state_file.exists() else None
    resuming = bool(state and state["steps_done"] > 0 and traj_file.exists())
    if resuming:
        with Trajectory(str(traj_file)) as tr:
            last = tr[-1]
        atoms = Atoms(last.numbers, positions=last.positions, momenta=last.get_momenta(),
                      cell=last.cell, pbc=last.pbc)
        steps_done = int(state["steps_done"])
        for name, keep in (("HILLS", True), ("COLVAR", False)):
            dropped = truncate_plumed_file(out / name, steps_done * dt, keep_at_cut=keep)
            if dropped:
                log.info("restart: dropped %d %s rows after step %d", dropped, name, steps_done)
        n_restarts = int(state.get("restarts", 0)) + 1
        saved = state.get("observers", {})
        for o in observers:
            if o.name in saved:
                o.load_state_dict(saved[o.name])
        log.info("resuming %s at step %d", out, steps_done)
    else:
        if atoms is None:
            if cfg.start is None:
                raise ValueError("give a start structure (--start FILE)")
            atoms = read_start(cfg.start)
        atoms = atoms.copy()
        steps_done, n_restarts = 0, 0
        thermalize_momenta(atoms, temperature_K=cfg.temperature_K,
                           rng=np.random.default_rng([cfg.seed, 0]))
        for name in ("HILLS", "COLVAR", "events.jsonl"):
            (out / name).unlink(missing_ok=True)
    if not np.all(np.isfinite(atoms.positions)):
        raise ValueError("the start structure has non-finite positions")
    remaining = cfg.steps - steps_done
    record = dict(record or {})
    events_file = out / "events.jsonl"
    counts = {"events": 0, "frames_with_events": 0}
    if resuming:
        counts.update(state.get("event_counts", {}))
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
                       desc=record.get("label", "metad"), disable=not show_progress)

        def checkpoint():
            traj.write(atoms)
            with atomic_path(state_file) as tmp:
                tmp.write_text(json.dumps({
                    "steps_done": steps_done + dyn.nsteps, "restarts": n_restarts,
                    "event_counts": counts,
                    "observers": {o.name: o.state_dict() for o in observers},
                    "record": record,
                    "config": {k: (str(v) if k == "model" else v)
                               for k, v in asdict(cfg).items()}}, indent=1))

        def check():
            nonlocal stopped_early
            step = steps_done + dyn.nsteps
            events = []
            for o in observers:
                events += o.observe(atoms, step, step * dt * 1e-3)
            if events:
                counts["events"] += len(events)
                counts["frames_with_events"] += 1
                with open(events_file, "a") as fh:
                    for e in events:
                        fh.write(json.dumps(e) + "\n")
                if cfg.stop_on_event:
                    stopped_early = events[0]
                    raise StopRun

        def tick():
            fields = {"ns_per_day": f"{ns_per_day(dyn.nsteps, dt, time.perf_counter() - t0):.2f}"}
            for o in observers:
                fields.update(o.progress_fields())
            bar.set_postfix(refresh=False, **fields)
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
            log.warning("stopped on an event: %s", stopped_early)
        finally:
            bar.close()
            # after a clean end (or a requested stop) record the final point; after Ctrl-C
            # or a crash the last regular checkpoint stays the restart point
            if not interrupted and dyn.nsteps % cfg.traj_interval:
                checkpoint()
            traj.close()
    elapsed = time.perf_counter() - t0
    done = steps_done + dyn.nsteps
    summary = {**record, "steps": done,
               "simulated_ps": done * dt * 1e-3, "wall_s_this_run": round(elapsed, 2),
               "ns_per_day": ns_per_day(dyn.nsteps, dt, elapsed),
               "hill_height_kJ_per_mol": height, "deck": str(deck),
               "friction_per_ps": cfg.friction_per_ps, **counts,
               "stopped_on": stopped_early, "output": str(out),
               "files": {k: str(out / k) for k in ("HILLS", "COLVAR", "trajectory.traj",
                                                     "events.jsonl")}}
    for o in observers:
        summary.update(o.summary())
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary
