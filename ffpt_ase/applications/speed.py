"""Speed measurements behind ``ffpt-ase bench speed`` (no training or external data needed).

``inference_speed`` times full ASE calls (graph construction + energy + forces) of a randomly
initialised model of the requested size on a built-in molecule whose geometry is perturbed
before every call, as in MD. ``training_speed`` times optimizer steps on rattled teacher
frames (energy + force loss, double backward), in frames per second.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ..calculators import FFPTCalculator
from ..data.graphs import batch_from_frames
from ..model.potential import Potential
from ..runtime import set_threads, torch_dtype, usable_device
from ..sampling import RattleSampler
from ..training.losses import energy_force_loss
from .systems import get_system


def _model_for(system, features, interactions, basis, cutoff, seed=0):
    calc, ref, teacher = get_system(system)
    torch.manual_seed(seed)
    model = Potential(sorted(set(ref.numbers.tolist())), features, interactions, basis, cutoff)
    return model, calc, ref, teacher


def inference_speed(system="aspirin", features=128, interactions=3, basis=20, cutoff=5.0,
                    dtype="float32", threads=1, n_calls=300, compile=False,
                    device="cpu") -> dict:
    """Milliseconds per ASE call (graph on the model's device, energy, forces, results on
    the host)."""
    set_threads(threads)
    model, _, ref, _ = _model_for(system, features, interactions, basis, cutoff)
    calc = FFPTCalculator(model, dtype=dtype, compile=compile, device=device)
    atoms = ref.copy()
    atoms.calc = calc
    rng = np.random.default_rng(0)
    x0 = atoms.positions.copy()
    for _ in range(10):  # warm-up
        atoms.positions = x0 + 0.01 * rng.normal(size=x0.shape)
        atoms.get_forces()
    times = []
    for _ in range(n_calls):
        atoms.positions = x0 + 0.01 * rng.normal(size=x0.shape)
        t = time.perf_counter()
        atoms.get_forces()
        times.append(time.perf_counter() - t)
    times = np.array(times) * 1e3
    return {"system": system, "n_atoms": len(atoms), "features": features,
            "interactions": interactions, "basis": basis, "cutoff": cutoff, "dtype": dtype,
            "threads": threads, "compile": compile, "device": str(calc.device),
            "n_calls": n_calls,
            "ms_per_call": float(np.median(times)), "ms_per_call_mean": float(times.mean()),
            "ms_per_call_p90": float(np.percentile(times, 90))}


def training_speed(system="aspirin", features=128, interactions=3, basis=20, cutoff=5.0,
                   dtype="float32", threads=1, batch_size=32, n_steps=20,
                   device="cpu") -> dict:
    """Training frames per second (graphs built on ``device``, energy + force loss, Adam)."""
    set_threads(threads)
    device = usable_device(device)
    model, calc, ref, teacher = _model_for(system, features, interactions, basis, cutoff)
    tdtype = torch_dtype(dtype)
    frames = RattleSampler(calc, ref, teacher_name=teacher).sample(
        batch_size * (n_steps + 2), show_progress=False)
    model = model.to(device=device, dtype=tdtype)
    model.fit_normalization(frames)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step(k):
        idx = np.arange(k * batch_size, (k + 1) * batch_size)
        batch = batch_from_frames(frames, idx, model.elements, model.cutoff, device=device
                                  ).to(dtype=tdtype)
        loss, _ = energy_force_loss(model(batch), batch)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def synchronize():   # GPU work is asynchronous: time it to its end
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    step(0)
    step(1)
    synchronize()
    t = time.perf_counter()
    for k in range(2, n_steps + 2):
        step(k)
    synchronize()
    elapsed = time.perf_counter() - t
    return {"system": system, "features": features, "interactions": interactions,
            "dtype": dtype, "threads": threads, "device": str(device), "batch_size": batch_size,
            "train_frames_per_s": batch_size * n_steps / elapsed,
            "ms_per_step": 1e3 * elapsed / n_steps}
