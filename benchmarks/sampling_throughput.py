"""Throughput of rattling + teacher labelling (issue goal: 100k HO2 frames < 10 s,
100k GAFF2 aspirin frames < 120 s on a 2-core machine).

    .venv/bin/python benchmarks/sampling_throughput.py [--n 100000] [--repeats 3]

Prints one line per system with the best wall time of the repeats and frames/s, and a JSON
line for machine reading. Relaxation of the reference is excluded from the timing.
"""

import argparse
import json
import platform
import time

from ffpt_ase.sampling import RattleSampler
from ffpt_ase.applications.systems import get_system


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--systems", nargs="+", default=["HO2", "H2O2", "water", "aspirin"])
    args = ap.parse_args()
    results = {}
    print(f"# {platform.processor() or platform.machine()}, n = {args.n} frames, sigma 0.2 A")
    for name in args.systems:
        calc, ref, teacher = get_system(name)
        sampler = RattleSampler(calc, ref, teacher_name=teacher, system_name=name)
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            frames = sampler.sample(args.n, show_progress=False)
            best = min(best, time.perf_counter() - t0)
        assert len(frames) == args.n
        results[name] = {
            "teacher": teacher,
            "seconds": round(best, 3),
            "frames_per_second": round(args.n / best),
        }
        print(f"{name:8s} {teacher:7s} {best:8.2f} s  {args.n / best:12.0f} frames/s")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
