"""Ensemble MD speed: the batched engine against the plain ASE loop, in one run.

    .venv/bin/python benchmarks/ensemble_speed.py [--quick] [--device cuda]

Measures, with a paper-size NewtonNet (128 features, 3 interactions, 20 radial functions,
5 A cutoff; random weights with the last readout layer zeroed: a network call costs the same
whatever its weights), float32, 1 torch thread, 0.5 fs steps, Langevin at 0.01 K. The
temperature is nearly zero so that the atoms, which feel no force, stay put and every
replica runs to the end (at 10 K a free hydrogen leaves the 0.5 A bond criterion within
0.1 ps); the cost of a step does not depend on the temperature:

1. replica-steps/s of the whole ``ffpt-ase stability --trajectories N`` command (a new
   process: start-up, model loading and output included) for N = 1, 16, 64 replicas of HO2
   (100 steps) and of aspirin (200 steps), against a plain ASE loop (``Langevin`` +
   ``FFPTCalculator``, one replica after another, model already loaded);
2. ns/day (aggregate) of 1, 8 and 32 channel-09 metadynamics walkers with PLUMED (0.2 fs;
   1 walker: the ASE + PLUMED driver, 8 and 32: the engine with shared hills);
3. the batched network's cost per frame (energy + forces) for batches of 1, 16 and 64;
4. the single aspirin ASE call (eager); the public NewtonNet 2.0.1 calculator needs
   torch_geometric with pyg-lib or torch_cluster, which cannot be built for this torch here,
   so the script says so instead of timing it.

Results go to ``benchmarks/results/ensemble_speed.json``; ``--device cuda`` adds the
engine's figures for 32 and 1,000 aspirin replicas on a GPU; ``--compiled`` measures 8
walkers and 16 aspirin replicas with ``--compile`` instead
(``ensemble_speed_compiled.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).parent
OUT = HERE / "results" / "ensemble_speed.json"
STEPS = {"HO2": 100, "aspirin": 200}
TEMPERATURE_K = 0.01


def paper_model(path: Path) -> Path:
    from ffpt_ase.model.potential import Potential
    torch.manual_seed(0)
    model = Potential([1, 6, 8], 128, 3, 20, 5.0)
    with torch.no_grad():
        model.net.readout[-1].weight.zero_()
        model.net.readout[-1].bias.zero_()
    torch.save(model.checkpoint(stage="benchmark: random weights, readout zeroed"), path)
    return path


def structure(name: str):
    from ffpt_ase.applications.systems import start_structure
    return start_structure(name)


def ase_loop(model: Path, system: str, n: int, steps: int) -> dict:
    """A user's own loop: ASE Langevin with FFPTCalculator, one replica after another."""
    from ase.md.velocitydistribution import thermalize_momenta

    from ffpt_ase.calculators import FFPTCalculator
    from ffpt_ase.simulate.md import langevin
    calc = FFPTCalculator(str(model))
    start = structure(system)
    t0 = time.perf_counter()
    for k in range(n):
        atoms = start.copy()
        atoms.calc = calc
        rng = np.random.default_rng([0, k])
        thermalize_momenta(atoms, temperature_K=TEMPERATURE_K, rng=rng)
        langevin(atoms, 0.5, TEMPERATURE_K, 2.0, rng).run(steps)
    wall = time.perf_counter() - t0
    return {"replica_steps": n * steps, "wall_s": round(wall, 3),
            "replica_steps_per_s": round(n * steps / wall, 1)}


def stability_command(model: Path, system: str, n: int, steps: int, out: Path,
                      device: str = "cpu") -> dict:
    """The whole `ffpt-ase stability` command in a new process, timed from outside."""
    cmd = [str(Path(sys.executable).parent / "ffpt-ase"), "stability", "--model", str(model),
           "--system", system, "--trajectories", str(n), "--time-ps", str(steps * 0.5e-3),
           "--temperature", str(TEMPERATURE_K), "--check-interval", "20", "--threads", "1",
           "--device", device, "-o", str(out), "--quiet"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ,
                                                               "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - t0
    s = json.loads((out / "summary.json").read_text())
    done = int(round(sum(r["simulated_ps"] for r in s["trajectories"]) / 0.5e-3))
    return {"replica_steps": done, "failed": s["n_failed"], "wall_s": round(wall, 3),
            "replica_steps_per_s": round(done / wall, 1),
            "engine_replica_steps_per_s": s.get("replica_steps_per_s")}


def walkers(model: Path, n: int, steps: int, out: Path) -> dict:
    from ffpt_ase.applications.h2combustion.metad import (ChannelMetadConfig,
                                                           run_channel_metadynamics)
    cfg = ChannelMetadConfig(reaction="09", model=str(model), steps=steps, walkers=n,
                             output=str(out), threads=1)
    s = run_channel_metadynamics(cfg, show_progress=False)
    return {"walkers": n, "steps": steps, "wall_s": s["wall_s_this_run"],
            "ns_per_day": round(s["ns_per_day"], 2)}


def network_cost(model: Path, system: str, sizes=(1, 16, 64), repeats: int = 20) -> dict:
    """Milliseconds per frame of one batched energy + forces call (median of repeats)."""
    from ffpt_ase.calculators import FFPTCalculator
    from ffpt_ase.simulate.ensemble import BatchedForces
    calc = FFPTCalculator(str(model))
    start = structure(system)
    out = {}
    for n in sizes:
        forces = BatchedForces(calc, [start] * n)
        rng = np.random.default_rng(0)
        x = torch.from_numpy(np.concatenate([start.positions] * n)
                             + 0.05 * rng.normal(size=(n * len(start), 3)))
        running = np.ones(n, bool)
        forces(x, running)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            forces(x, running)
            times.append(time.perf_counter() - t0)
        out[str(n)] = round(1e3 * float(np.median(times)) / n, 3)
    return out


def single_call(model: Path, rounds: int = 5, calls: int = 100) -> dict:
    """One aspirin ASE call (eager), median ms of ``calls`` calls, in ``rounds`` rounds."""
    from ffpt_ase.calculators import FFPTCalculator
    atoms = structure("aspirin")
    ours = FFPTCalculator(str(model))
    try:
        import newtonnet  # noqa: F401
        note = ("newtonnet is importable, but this script builds no public paper-size model: "
                "compare by hand")
    except ImportError as err:
        note = (f"the public NewtonNet 2.0.1 is not importable here ({err}; it needs "
                "torch_geometric with pyg-lib or torch_cluster built for this torch)")

    def timed(calc):
        a = atoms.copy()
        a.calc = calc
        rng = np.random.default_rng(1)
        times = []
        for _ in range(calls):
            a.positions = atoms.positions + 0.01 * rng.normal(size=atoms.positions.shape)
            t0 = time.perf_counter()
            a.get_forces()
            times.append(time.perf_counter() - t0)
        return 1e3 * float(np.median(times))
    timed(ours)
    return {"ours_ms": [round(timed(ours), 2) for _ in range(rounds)], "public_newtonnet": note}


def compiled(model: Path, tmp: Path) -> dict:
    """The same measurements with ``--compile`` (torch.compile of the network, once per
    process, not counted): 8 channel-09 walkers and 16 aspirin replicas on the engine."""
    from ffpt_ase.applications.h2combustion.metad import (ChannelMetadConfig,
                                                           run_channel_metadynamics)
    from ffpt_ase.simulate.stability import StabilityConfig, run_stability
    out = {}
    t0 = time.perf_counter()
    run_channel_metadynamics(ChannelMetadConfig(reaction="09", model=str(model), steps=200,
                                                walkers=8, output=str(tmp / "cw0"),
                                                compile=True), show_progress=False)
    s = run_channel_metadynamics(ChannelMetadConfig(reaction="09", model=str(model),
                                                    steps=1000, walkers=8,
                                                    output=str(tmp / "cw"), compile=True),
                                 show_progress=False)
    out["walkers_8_ns_per_day"] = round(s["ns_per_day"], 2)
    out["walkers_compile_s"] = round(time.perf_counter() - t0 - s["wall_s_this_run"], 1)
    start = structure("aspirin")
    kw = dict(system="aspirin", model=str(model), trajectories=16,
              temperature_K=TEMPERATURE_K, compile=True)
    run_stability(StabilityConfig(time_ps=0.01, output=str(tmp / "ca0"), **kw), start=start,
                  show_progress=False)
    s = run_stability(StabilityConfig(time_ps=0.5, output=str(tmp / "ca"), **kw), start=start,
                      show_progress=False)
    out["aspirin_16_engine_replica_steps_per_s"] = s["replica_steps_per_s"]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer sizes (a smoke run)")
    ap.add_argument("--device", default="cpu", help="also measure the engine on this device")
    ap.add_argument("--walker-steps", type=int, default=1000)
    ap.add_argument("--compiled", action="store_true",
                    help="only the torch.compile'd figures (ensemble_speed_compiled.json)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.compiled:
        with tempfile.TemporaryDirectory() as tmp:
            res = {"command": " ".join([sys.executable] + sys.argv),
                   **compiled(paper_model(Path(tmp) / "paper.pt"), Path(tmp))}
        print(res)
        path = OUT.with_name("ensemble_speed_compiled.json")
        path.write_text(json.dumps(res, indent=1) + "\n")
        print(f"wrote {path}")
        return
    sizes = (1, 4) if args.quick else (1, 16, 64)
    res = {"machine": platform.machine(), "processor": platform.processor(),
           "command": " ".join([sys.executable] + sys.argv), "threads": 1,
           "model": "paper size, float32, random weights (readout zeroed)"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = paper_model(tmp / "paper.pt")
        for system in ("HO2", "aspirin"):
            rows = {}
            for n in sizes:
                base = ase_loop(model, system, n, STEPS[system])
                cmd = stability_command(model, system, n, STEPS[system], tmp / f"{system}{n}")
                rows[str(n)] = {"ase_loop": base, "stability_command": cmd,
                                "speedup": round(cmd["replica_steps_per_s"]
                                                 / base["replica_steps_per_s"], 2)}
                print(f"{system:8s} {n:3d} replicas x {STEPS[system]} steps: ASE loop "
                      f"{base['replica_steps_per_s']:7.1f}, `ffpt-ase stability` "
                      f"{cmd['replica_steps_per_s']:7.1f} replica-steps/s (engine alone "
                      f"{cmd['engine_replica_steps_per_s']}) -> {rows[str(n)]['speedup']}x",
                      flush=True)
            res[f"stability_{system}"] = rows
            if not args.quick:   # a longer run: the start-up spread over 10x the steps
                n, steps = (64, 1000) if system == "HO2" else (16, 1000)
                cmd = stability_command(model, system, n, steps, tmp / f"{system}{n}long")
                base = rows[str(n)]["ase_loop"]["replica_steps_per_s"]
                res[f"stability_{system}_long"] = {
                    "stability_command": cmd, "ase_loop_replica_steps_per_s": base,
                    "speedup": round(cmd["replica_steps_per_s"] / base, 2),
                    "note": "the ASE loop's rate from the 200/100-step runs (one replica "
                            "after another: its rate does not depend on the run length)"}
                print(f"{system:8s} {n:3d} replicas x {steps} steps: `ffpt-ase stability` "
                      f"{cmd['replica_steps_per_s']:7.1f} replica-steps/s -> "
                      f"{res[f'stability_{system}_long']['speedup']}x the ASE loop",
                      flush=True)
        res["walkers_channel09"] = {}
        for n in ((1, 2) if args.quick else (1, 8, 32)):
            w = walkers(model, n, args.walker_steps, tmp / f"walkers{n}")
            res["walkers_channel09"][str(n)] = w
            print(f"channel 09, {n:2d} walker(s) with PLUMED: {w['ns_per_day']:.2f} ns/day "
                  f"(aggregate)", flush=True)
        res["network_ms_per_frame"] = {s: network_cost(model, s, sizes) for s in STEPS}
        print("network ms per frame (energy + forces):", res["network_ms_per_frame"])
        res["single_aspirin_call"] = single_call(model)
        print("single aspirin ASE call, ms:", res["single_aspirin_call"])
        if args.device != "cpu":
            res["device"] = {"name": args.device, "torch": torch.__version__}
            for n in (32, 1000):
                cmd = stability_command(model, "aspirin", n, STEPS["aspirin"],
                                        tmp / f"gpu{n}", device=args.device)
                res["device"][f"aspirin_{n}"] = cmd
                print(f"{args.device}: aspirin {n} replicas: "
                      f"{cmd['replica_steps_per_s']} replica-steps/s (command)", flush=True)
    OUT.parent.mkdir(exist_ok=True)
    if not args.quick:
        OUT.write_text(json.dumps(res, indent=1) + "\n")
        print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
