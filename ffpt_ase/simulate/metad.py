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

The folder is a :class:`~ffpt_ase.runfolder.RunFolder` (locked while the run lasts,
fingerprinted in ``run.json``). Running the same command again continues from the last
checkpoint, the same as if the run had never stopped: HILLS, COLVAR, trajectory and events
are cut back to it, PLUMED restarts (RESTART semantics: it reads the hills so far and
appends) and the dynamics continue from the saved atoms, momenta, biased forces and
thermostat random state. A deck with ``PACE=1`` loses the one hill of the first step after
a restart (PLUMED deposits none on the first step of a run).

**Units.** ASE's PLUMED wrapper hands PLUMED energies in kJ/mol, lengths in nm and times in
ps unless the deck declares ``UNITS``; a deck without a ``UNITS`` line is refused (say
``UNITS LENGTH=nm`` to mean PLUMED's defaults).

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
from .md import (MDSettings, StopRun, cut_trajectory, langevin, ns_per_day,
                 read_structures)
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
    actions only) and relative FILE= names redirected into ``output`` (except on a line
    with ``WALKERS_DIR``, whose hills files PLUMED names inside that folder)."""
    def fix(match):
        name = match.group(1)
        return f"FILE={name if Path(name).is_absolute() else output / name}"
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    # a METAD of walkers in separate processes names its hills relative to WALKERS_DIR
    return [line if "WALKERS_DIR=" in line.upper() else re.sub(r"FILE=(\S+)", fix, line)
            for line in lines if line]


def truncate_plumed_file(path: Path, t_cut: float, keep_at_cut: bool = False,
                         tolerance: float = 1e-6) -> int:
    """Drop data rows written after ``t_cut`` (time = first column, ``tolerance`` in the
    same unit) and a torn last row (a crash while PLUMED wrote it); returns how many.

    A resumed run continues after its checkpoint at ``t_cut``, whose rows (the COLVAR row
    and the hill deposited at that step) the interrupted run wrote already:
    ``keep_at_cut=True`` keeps them.
    """
    if not path.exists():
        return 0
    keep, dropped = [], 0
    limit = t_cut + tolerance if keep_at_cut else t_cut - tolerance
    for line in path.read_text().splitlines(keepends=True):
        if line.startswith("#") or not line.strip():
            keep.append(line)
            continue
        try:
            time_value = float(line.split()[0])
        except ValueError:
            time_value = None
        if line.endswith("\n") and time_value is not None and time_value < limit:
            keep.append(line)
        else:
            dropped += 1
    if dropped:
        with atomic_path(path) as tmp:
            tmp.write_text("".join(keep))
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
    height = None
    for line in lines:
        words = line.split("#", 1)[0].split()
        if "METAD" in words:
            for w in words:
                if w.upper().startswith("HEIGHT="):
                    height = float(w.split("=", 1)[1])
    if height is None:
        return None
    unit = (deck_units(lines) or {}).get("ENERGY", "kj/mol").lower()
    if unit not in _ENERGY_UNITS_KJMOL:
        raise ValueError(f"unknown PLUMED energy unit {unit!r}")
    return height * _ENERGY_UNITS_KJMOL[unit]


def deck_units(lines) -> dict | None:
    """The deck's ``UNITS`` line as ``{"LENGTH": "A", "TIME": "fs", ...}`` (keys upper case,
    values as written), or None if the deck has no ``UNITS`` line."""
    units_line = None
    for line in lines:
        words = line.split("#", 1)[0].split()
        if words and words[0].upper() == "UNITS":
            units_line = {w.split("=", 1)[0].upper(): w.split("=", 1)[1]
                          for w in words[1:] if "=" in w}
    return units_line


def declares_units(lines) -> bool:
    """Whether deck lines declare PLUMED ``UNITS``."""
    return deck_units(lines) is not None


def deck_time_unit_fs(lines) -> float:
    """Femtoseconds per time unit of a deck (its ``UNITS TIME=``; PLUMED's default: ps)."""
    unit = (deck_units(lines) or {}).get("TIME", "ps")
    table = {"fs": 1.0, "ps": 1000.0, "ns": 1.0e6}
    if unit.lower() in table:
        return table[unit.lower()]
    try:
        return float(unit) * 1000.0  # PLUMED: a number is that many ps
    except ValueError:
        raise ValueError(f"unknown PLUMED time unit TIME={unit}") from None


@dataclass(kw_only=True)
class MetadConfig(MDSettings):
    """Settings of a metadynamics run (flags of ``ffpt-ase metad``)."""

    deck: str | None = setting(None, "PLUMED input file", role="input")
    start: str | None = setting(None, "start structure file (its last frame)", role="input")
    steps: int = setting(10000, "MD steps in all (a resumed run continues to this count)",
                         role="free")
    output: str = redefault(MDSettings, "output", "runs/metad")
    friction_per_ps: float = redefault(MDSettings, "friction_per_ps", 20.0)  # 0.2/ps overheats
    timestep_fs: float = redefault(MDSettings, "timestep_fs", 0.2)
    traj_interval: int = setting(100, "steps between saved frames (the restart points)")
    check_interval: int = setting(10, "steps between observer checks")
    stop_on_event: bool = setting(False, "stop at the first event an observer reports",
                                  role="free")
    walkers: int = setting(1, "walkers advanced together, one batched model call per step "
                              "(1: a single run through ASE's PLUMED calculator)")
    share_bias: bool = setting(True, "walkers build one bias (PLUMED's multiple walkers); "
                                     "--no-share-bias: independent runs")

    def __post_init__(self):
        super().__post_init__()
        if not self.temperature_K > 0 or not self.timestep_fs > 0 or self.steps < 0 \
                or not self.friction_per_ps >= 0 or self.traj_interval < 1 \
                or self.check_interval < 1 or self.walkers < 1:
            raise ValueError(
                f"metadynamics needs temperature > 0 K, timestep > 0 fs, friction >= 0, "
                f"steps >= 0, intervals >= 1 and walkers >= 1 (got {self.temperature_K} K, "
                f"{self.timestep_fs} fs, {self.friction_per_ps} /ps, {self.steps} steps, "
                f"intervals {self.traj_interval}/{self.check_interval}, {self.walkers} "
                f"walkers)")


def read_start(path: str | Path) -> Atoms:
    """The last frame of a structure file (any ASE format)."""
    return read_structures(path, -1, "start structure")


def run_metadynamics(cfg: MetadConfig, atoms: Atoms | None = None, calc=None,
                     observers=(), record: dict | None = None,
                     show_progress: bool = True, start_over: bool = False) -> dict:
    """Run (or continue) well-tempered metadynamics; returns the summary dictionary.

    ``atoms``: the start of a fresh run (default: ``cfg.start``); ``calc``: the ML
    calculator (default: ``cfg.model`` read by :class:`FFPTCalculator`); ``observers``:
    :class:`~ffpt_ase.simulate.observers.Observer` objects called every ``check_interval``
    steps (a temperature monitor is always added); ``record``: facts about the run (e.g. the
    application and reaction) stored in ``state.json`` and the summary.

    The output is a :class:`~ffpt_ase.runfolder.RunFolder`: running again resumes (the
    settings, deck, start structure and model must be the same; ``steps`` may grow), and
    ``start_over`` moves an old run aside first. ``state.json`` is the commit point of each
    checkpoint: it holds the atoms, their momenta, the biased forces, the thermostat's random
    state and the observers' counters, so a resumed run continues exactly where the
    uninterrupted one would have been (its HILLS, COLVAR, trajectory and events are cut back
    to that point).
    """
    from ..runfolder import RunFolder, atoms_digest, calculator_digest, file_digest
    from .md import check_start

    if cfg.deck is None:
        raise ValueError("give a PLUMED deck (--deck FILE)")
    deck = Path(cfg.deck)
    if not deck.is_file():
        raise FileNotFoundError(f"PLUMED deck not found: {deck}")
    require_plumed()
    set_threads(cfg.threads)
    out = Path(cfg.output).resolve()
    lines = set_metad_temperature(deck_lines(deck, out), cfg.temperature_K, deck)
    if not declares_units(lines):
        raise ValueError(f"{deck} declares no UNITS: PLUMED would read its lengths in nm, "
                         "energies in kJ/mol and times in ps; say so with a UNITS line (e.g. "
                         "`UNITS LENGTH=A ENERGY=kj/mol TIME=fs`, or `UNITS LENGTH=nm` for "
                         "PLUMED's defaults)")
    fs_per_unit = deck_time_unit_fs(lines)
    if not any(line.split()[0].upper() == "FLUSH" for line in lines):
        # PLUMED's files reach the disk at every checkpoint, so a killed run loses no row
        # that its restart point needs
        lines.append(f"FLUSH STRIDE={cfg.traj_interval}")
    height = metad_height_kjmol(lines)
    if calc is None:
        if cfg.model is None:
            raise ValueError("give a model checkpoint (--model) or a calculator")
        from ..calculators import FFPTCalculator
        calc = FFPTCalculator.from_checkpoints(cfg.model, dtype=cfg.dtype, compile=cfg.compile,
                                               device=cfg.device)
    if atoms is None:
        if cfg.start is None:
            raise ValueError("give a start structure (--start FILE)")
        atoms = read_start(cfg.start)
    check_start(atoms, calc)
    thermometer = TemperatureMonitor(cfg.temperature_K)
    observers = [thermometer, *observers]
    names = [o.name for o in observers]
    if len(set(names)) != len(names):
        raise ValueError(f"observers need distinct names, got {names}")
    record = dict(record or {})
    roles = cfg.by_role()
    run = RunFolder(out, "metad", settings={**roles["setting"], "record": record},
                    inputs={"deck": file_digest(deck), "start": atoms_digest(atoms),
                            "model": calculator_digest(calc)},
                    free=roles["free"], start_over=start_over)
    with run:
        if cfg.walkers > 1:
            from .walkers import run_walkers
            def lines_for(folder):   # the deck's files go into each walker's folder
                return [line.replace(f"FILE={out}/", f"FILE={folder}/") for line in lines]
            return run_walkers(run, cfg, lines_for, fs_per_unit, height, atoms, calc,
                               observers, record, show_progress)
        return _metad_in_folder(run, cfg, lines, fs_per_unit, height, atoms, calc,
                                observers, record, show_progress)


def _metad_in_folder(run, cfg, lines, fs_per_unit, height, atoms, calc, observers, record,
                     show_progress) -> dict:
    """The body of :func:`run_metadynamics`, inside its locked run folder."""
    from ase.calculators.plumed import Plumed
    from ase.io import Trajectory
    from ase.md.velocitydistribution import thermalize_momenta

    out = run.path
    run.write_text("plumed.dat", "\n".join(lines) + "\n")
    state_name, traj_file, events_name = "state.json", out / "trajectory.traj", "events.jsonl"
    dt = cfg.timestep_fs
    state = run.read_json(state_name)
    if state is None:  # a fresh run (or one that never reached its first checkpoint)
        atoms = atoms.copy()
        thermalize_momenta(atoms, temperature_K=cfg.temperature_K,
                           rng=np.random.default_rng([cfg.seed, 0]))
        steps_done, wall_done, cached = 0, 0.0, None
        rng = np.random.default_rng([cfg.seed, 1])
        counts = {"events": 0, "frames_with_events": 0}
        for name in ("HILLS", "COLVAR", events_name, "trajectory.traj"):
            (out / name).unlink(missing_ok=True)
        n_frames = 0
    else:
        steps_done, wall_done = int(state["steps_done"]), float(state.get("wall_s", 0.0))
        atoms = Atoms(atoms.numbers, positions=state["positions"], momenta=state["momenta"],
                      cell=atoms.cell, pbc=atoms.pbc)
        cached = {"energy": state["energy"], "forces": np.array(state["forces"])}
        rng = np.random.default_rng()
        rng.bit_generator.state = state["rng"]
        counts = dict(state["event_counts"])
        for o in observers:
            if o.name in state["observers"]:
                o.load_state_dict(state["observers"][o.name])
        n_frames = int(state["trajectory_frames"])
        _cut_back(run, steps_done, dt / fs_per_unit, n_frames, events_name)
    remaining = cfg.steps - steps_done
    complete = state is not None and (
        remaining <= 0 or bool(cfg.stop_on_event and state.get("stopped_on")))
    finished_summary = run.read_json("summary.json") if complete else None
    if finished_summary is not None:
        log.info("%s is complete (%d steps); nothing to do", out, steps_done)
        return finished_summary
    stopped_early = state.get("stopped_on") if complete else None
    t0 = time.perf_counter()
    timestep = dt * units.fs
    with Plumed(calc, lines, timestep, atoms=atoms, kT=units.kB * cfg.temperature_K,
                log=str(out / "plumed.log"), restart=state is not None) as pcalc:
        atoms.calc = pcalc
        pcalc.istep = steps_done
        if cached is not None:
            # the biased forces at the restart point as the uninterrupted run had them
            # (PLUMED would otherwise count the restart point's hill twice); PLUMED's first
            # step is then the next one
            pcalc.atoms = atoms.copy()
            pcalc.results = dict(cached)
            pcalc.istep += 1
        dyn = langevin(atoms, dt, cfg.temperature_K, cfg.friction_per_ps, rng)
        dyn.nsteps = steps_done  # observers and checkpoints run at absolute step counts
        traj = Trajectory(str(traj_file), "a" if n_frames else "w", atoms)
        bar = progress(total=cfg.steps, initial=steps_done, unit="step",
                       desc=record.get("label", "metad"), disable=not show_progress)

        def checkpoint():
            nonlocal n_frames
            traj.write(atoms)
            n_frames += 1
            run.after_write("trajectory.traj")
            run.write_json(state_name, {
                "steps_done": dyn.nsteps, "trajectory_frames": n_frames,
                "wall_s": round(wall_done + time.perf_counter() - t0, 3),
                "positions": atoms.positions.tolist(), "momenta": atoms.get_momenta().tolist(),
                "energy": float(pcalc.results["energy"]),
                "forces": np.asarray(pcalc.results["forces"]).tolist(),
                "rng": dyn.rng.bit_generator.state, "event_counts": counts,
                "stopped_on": stopped_early,
                "observers": {o.name: o.state_dict() for o in observers},
                "record": record,
                "config": {k: (str(v) if k == "model" else v) for k, v in asdict(cfg).items()}})

        def check():
            nonlocal stopped_early
            step = dyn.nsteps
            events = []
            for o in observers:
                events += o.observe(atoms, step, step * dt * 1e-3)
            if events:
                counts["events"] += len(events)
                counts["frames_with_events"] += 1
                for e in events:
                    run.append_line(events_name, json.dumps({"step": step, **e}))
                if cfg.stop_on_event:
                    stopped_early = events[0]
                    raise StopRun

        def tick():
            rate = ns_per_day(dyn.nsteps - steps_done, dt, time.perf_counter() - t0)
            fields = {"ns_per_day": f"{rate:.2f}"}
            for o in observers:
                fields.update(o.progress_fields())
            bar.set_postfix(refresh=False, **fields)
            bar.update(dyn.nsteps - bar.n)

        def at_new_steps(function):
            # ASE calls observers before the first step of a run at step 0; a run resumed
            # at step 0 saw that step already
            def call():
                if state is None or dyn.nsteps > steps_done:
                    function()
            return call

        dyn.attach(at_new_steps(check), interval=cfg.check_interval)
        dyn.attach(at_new_steps(tick), interval=cfg.check_interval)
        dyn.attach(at_new_steps(checkpoint), interval=cfg.traj_interval)
        finished = False
        try:
            if not complete:  # (a fresh run of 0 steps still checkpoints its step 0)
                dyn.run(max(remaining, 0))
            finished = True
        except StopRun:
            finished = True
            log.warning("stopped on an event: %s", stopped_early)
        finally:
            bar.close()
            # after a clean end (or a requested stop) record the final point; after Ctrl-C
            # or a crash the last regular checkpoint stays the restart point
            if finished and dyn.nsteps > steps_done and dyn.nsteps % cfg.traj_interval:
                checkpoint()
            traj.close()
    elapsed = time.perf_counter() - t0
    done = dyn.nsteps
    summary = {**record, "steps": done,
               "simulated_ps": done * dt * 1e-3, "wall_s_this_run": round(elapsed, 2),
               "ns_per_day": ns_per_day(done - steps_done, dt, elapsed),
               "hill_height_kJ_per_mol": height, "deck": str(cfg.deck),
               "friction_per_ps": cfg.friction_per_ps, **counts,
               "stopped_on": stopped_early, "output": str(out),
               "files": {k: str(out / k) for k in ("HILLS", "COLVAR", "trajectory.traj",
                                                     "events.jsonl")}}
    for o in observers:
        summary.update(o.summary())
    # the ensemble driver's per-walker layout, for one walker (which stops the run on failure)
    summary["walker_folders"] = [str(out)]
    summary["per_walker"] = [{"failed_at_step": None, **{o.name: o.summary() for o in observers}}]
    run.write_json("summary.json", summary)
    return summary


def _cut_back(run, steps_done: int, dt_deck: float, n_frames: int, events_name: str) -> None:
    """Cut a run folder's files back to its last checkpoint (step ``steps_done``): PLUMED
    rows after it (their time is in the deck's unit, ``dt_deck`` per step), trajectory
    frames after the ``n_frames``-th, events after the step."""
    _cut_back_files([run.path / "HILLS", run.path / "COLVAR"], steps_done, dt_deck)
    dropped = cut_trajectory(run.path / "trajectory.traj", n_frames)
    if dropped:
        log.info("restart: dropped %d trajectory frames after step %d", dropped, steps_done)
    events = run.read_lines(events_name)
    kept = [e for e in events if e.get("step", 0) <= steps_done]
    if len(kept) < len(events):
        run.write_text(events_name, "".join(json.dumps(e) + "\n" for e in kept))


def _cut_back_files(paths, steps_done: int, dt_deck: float) -> None:
    """Drop the rows of PLUMED files written after step ``steps_done`` (``dt_deck``: the
    time step in the deck's time unit); the rows of that step stay."""
    t_cut = steps_done * dt_deck
    for path in paths:
        dropped = truncate_plumed_file(path, t_cut, keep_at_cut=True, tolerance=0.25 * dt_deck)
        if dropped:
            log.info("restart: dropped %d rows of %s after step %d", dropped, path.name,
                     steps_done)
