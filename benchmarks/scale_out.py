"""Beyond one CPU (issue 12): what each path costs, as numbers.

    .venv/bin/python benchmarks/scale_out.py                 # this machine (CPU)
    .venv/bin/python benchmarks/scale_out.py --device cuda   # where a GPU is lent

1. Graph construction, NumPy/matscipy path vs the torch neighbour list (the GPU path), on
   the same device: batches of 32 aspirin molecules, 32 HO2 molecules, one periodic box of
   64 water molecules (ms per batch, median of repeats).
2. The exported TorchScript model vs FFPTCalculator: ms per energy+forces call on one
   aspirin molecule (paper-size model, random weights, float32).
Both comparisons are timed in alternation (A B A B ...) in one process, medians quoted.
3. Training throughput (frames/s, paper size, batch 32) on the device.

Results go to ``benchmarks/results/scale_out_<device>.json``.
"""

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ffpt_ase.applications.speed import training_speed
from ffpt_ase.applications.systems import get_system
from ffpt_ase.data.graphs import build_batch
from ffpt_ase.model.export import export_potential
from ffpt_ase.model.potential import Potential
from ffpt_ase.runtime import set_threads, usable_device

RESULTS = Path(__file__).parent / "results"


def water_box(n_side=4, spacing=3.1):
    from ase import Atoms
    from ase.build import molecule
    box = Atoms(cell=np.eye(3) * n_side * spacing, pbc=True)
    for idx in np.ndindex(n_side, n_side, n_side):
        w = molecule("H2O")
        w.positions += np.array(idx) * spacing + 1.0
        box += w
    return box


def paired_ms(fns: dict, repeats, device) -> dict:
    """Median milliseconds of each function, timed in alternation (A B A B ...) so that a
    drift of this shared machine's speed affects all of them alike; each runs once first."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times[name].append(time.perf_counter() - t)
    return {name: 1e3 * float(np.median(t)) for name, t in times.items()}


def graph_speed(device, repeats=30):
    rng = np.random.default_rng(0)
    out = {}
    cases = {}
    for name in ("aspirin", "HO2"):
        ref = get_system(name)[1]
        cases[f"32 {name}"] = dict(positions=ref.positions[None] + 0.1 * rng.normal(
            size=(32, len(ref), 3)), numbers=ref.numbers, elements=sorted(set(ref.numbers)))
    box = water_box()
    cases[f"water box ({len(box)} atoms)"] = dict(
        positions=box.positions[None], numbers=box.numbers, elements=[1, 8],
        cell=box.cell.array[None], pbc=box.pbc)
    for name, kw in cases.items():
        row = paired_ms({f"{method}_ms": (lambda m=method: build_batch(
            cutoff=5.0, device=device, neighbour_list=m, **kw)) for method in ("numpy", "torch")},
            repeats, device)
        out[name] = row
        print(f"graph {name:28s} numpy/matscipy {row['numpy_ms']:8.3f} ms   torch "
              f"{row['torch_ms']:8.3f} ms   ({device}, paired medians)")
    return out


def exported_speed(device, calls=200):
    """One aspirin energy+forces call, the exported TorchScript file and FFPTCalculator
    (graph, network, results on the host), timed in alternation on perturbed geometries."""
    from ffpt_ase.calculators import FFPTCalculator
    ref = get_system("aspirin")[1]
    torch.manual_seed(0)
    model = Potential(sorted(set(ref.numbers)))
    with tempfile.TemporaryDirectory() as tmp:
        path = export_potential(model, Path(tmp) / "m.pt", dtype="float32")
        scripted = torch.jit.load(str(path), map_location=device)
    atoms = ref.copy()
    atoms.calc = FFPTCalculator(model, device=str(device))
    rng = np.random.default_rng(0)
    x0 = ref.positions.copy()
    fixed = [torch.tensor(ref.numbers, device=device), None,
             torch.tensor(ref.cell.array, device=device), torch.tensor(ref.pbc, device=device)]

    def perturbed():
        return x0 + 0.01 * rng.normal(size=x0.shape)

    def exported():
        fixed[1] = torch.tensor(perturbed(), device=device)
        scripted(*fixed)["forces"].cpu()

    def calculator():
        atoms.positions = perturbed()
        atoms.get_forces()

    row = paired_ms({"exported_ms_per_call": exported, "calculator_ms_per_call": calculator},
                    calls, device)
    print(f"aspirin call: exported TorchScript {row['exported_ms_per_call']:.2f} ms, "
          f"FFPTCalculator {row['calculator_ms_per_call']:.2f} ms ({device}, paired medians)")
    return row


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    set_threads(args.threads)
    try:
        device = usable_device(args.device)
    except ValueError as err:
        sys.exit(f"scale_out: {err}")
    results = {"machine": platform.machine(), "device": str(device),
               "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
               else platform.processor() or platform.machine(),
               "threads": args.threads, "torch": torch.__version__,
               "command": " ".join([sys.executable] + sys.argv)}
    results["graphs"] = graph_speed(device)
    results["aspirin_call"] = exported_speed(device)
    results["training"] = training_speed(device=str(device), n_steps=10)
    print(f"training: {results['training']['train_frames_per_s']:.1f} frames/s (aspirin, "
          f"batch 32, paper size, {device})")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"scale_out_{device.type}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
