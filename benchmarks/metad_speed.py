"""Metadynamics speed (ns/day) of channel 09 (HO2, 3 atoms) with a paper-size NewtonNet
(128 features, 3 interactions, random weights: speed does not depend on training), through
ASE Langevin + ase.calculators.plumed with the shipped deck, 0.2 fs steps, 1 torch thread.

    .venv/bin/python benchmarks/metad_speed.py [--steps 3000]
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

from ffpt_ase.model.potential import Potential
from ffpt_ase.applications.h2combustion.metad import ChannelMetadConfig as MetadConfig
from ffpt_ase.applications.h2combustion.metad import run_channel_metadynamics as run_metadynamics

OUT = Path(__file__).parent / "results" / "metad_speed.json"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3000)
    args = ap.parse_args()
    results = {"command": " ".join([sys.executable] + sys.argv)}
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        model = Potential([1, 8], 128, 3, 20, 5.0)
        ckpt = Path(tmp) / "paper_size.pt"
        torch.save(model.checkpoint(stage="random"), ckpt)
        for compile_ in (False, True):
            if compile_:  # compile once (about 25 s) before timing, as a long run would
                run_metadynamics(
                    MetadConfig(
                        reaction="09",
                        model=str(ckpt),
                        steps=50,
                        output=str(Path(tmp) / "warmup"),
                        compile=True,
                    ),
                    show_progress=False,
                )
            s = run_metadynamics(
                MetadConfig(
                    reaction="09",
                    model=str(ckpt),
                    steps=args.steps,
                    output=str(Path(tmp) / f"run{int(compile_)}"),
                    compile=compile_,
                ),
                show_progress=False,
            )
            key = "compiled" if compile_ else "eager"
            results[key] = {
                "steps": s["steps"],
                "wall_s": s["wall_s_this_run"],
                "ns_per_day": s["ns_per_day"],
                "ms_per_step": 1e3 * s["wall_s_this_run"] / s["steps"],
            }
            print(
                f"{key:8s}: {s['ns_per_day']:.2f} ns/day ({results[key]['ms_per_step']:.2f} "
                f"ms per 0.2 fs step, {args.steps} steps)"
            )
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
