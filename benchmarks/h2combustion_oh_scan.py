"""Hydrogen combustion, channel 09 (HO2 -> H + O2): the energy along the O-H distance, the
paper's Figure 4a (issue 13, item 6).

The O-H distance goes from 0.4 to 3 A with the O-O bond and the other atoms fixed, each
curve relative to its value at the reactant's O-H distance (0.98 A). The curves are the
models', the Q-Force Table 1 teacher's and PySCF single points at the data set's level (UKS
wB97X-V/cc-pVTZ, 0.5-3 A; about 2 min per point on this machine). The single points are
kept point by point in ``benchmarks/results/h2combustion_oh_scan_dft.json`` (committed), so
the scan reruns without PySCF. ``benchmarks/h2combustion.py`` draws the same figure for its
trained-out models; this script draws it for any models:

    .venv/bin/python benchmarks/h2combustion_oh_scan.py --model scratch=PATH \\
        --model FFPT-FT=PATH

Writes ``benchmarks/results/h2combustion_oh_scan.{json,md,png}`` (``--stem`` to change).
"""

from __future__ import annotations

import argparse

import bench_common as bench
import numpy as np

from ffpt_ase.applications.h2combustion.workflows import oh_scan

DFT_CACHE = bench.RESULTS / "h2combustion_oh_scan_dft.json"
#: the O-H distances (A) the table reports
TABLE_R = (0.5, 0.6, 0.7, 0.8, 1.5, 2.0, 3.0)


def scan_and_plot(models: dict, stem: str, with_dft: bool = True) -> tuple[dict, str]:
    """The scan of ``models`` (name -> checkpoint), its figure ``results/<stem>.png``, and
    ``(record, markdown table)``: E(r) - E(r_eq) in eV at :data:`TABLE_R`."""
    from ffpt_ase.analysis.plots import label_and_save, subplots
    out = oh_scan(models, dft_cache=DFT_CACHE, with_dft=with_dft)
    r, curves, dft, level = out["r"], out["curves"], out["dft"], out["dft_level"]
    fig, ax = subplots(figsize=(6, 4.2))
    for name, e in curves.items():
        ax.plot(r, e, label=name)
    reference = f"UKS {level['xc']}/{level['basis']} (PySCF)"
    if dft is not None:
        ax.plot(*dft, "ko", ms=3, label=reference)
    ax.set_ylim(-1, 25)   # (the 0.5 A contact, where the models differ most, in view)
    ax.axhline(0.0, color="grey", lw=0.5)
    label_and_save(fig, ax, bench.RESULTS / f"{stem}.png", "O-H distance [A]",
                   "E - E(r_eq) [eV]", "rxn 09, HO2 -> H + O2 (O-O fixed)", legend=True)

    def at(x, y, x0):
        k = int(np.argmin(np.abs(np.asarray(x) - x0)))
        return f"{y[k]:+.2f}" if abs(x[k] - x0) < 1e-6 else "-"
    rows = {**({reference: dft} if dft is not None else {}),
            **{name: (r, e) for name, e in curves.items()}}
    lines = [f"Channel 09, E(r_OH) - E({out['r_eq']:.2f} A) in eV, O-O fixed "
             f"([figure]({stem}.png))", "",
             "| curve | " + " | ".join(f"{x:g} A" for x in TABLE_R) + " |",
             "|---|" + "---|" * len(TABLE_R)]
    for name, (x, y) in rows.items():
        lines.append(f"| {name} | " + " | ".join(at(x, y, x0) for x0 in TABLE_R) + " |")
    record = {"r_A": r.tolist(), "r_eq_A": out["r_eq"],
              "curves": {k: v.tolist() for k, v in curves.items()},
              "dft": None if dft is None else {"level": level, "r_A": dft[0].tolist(),
                                               "energy_eV": dft[1].tolist()}}
    return record, "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", action="append", default=[], metavar="NAME=PATH")
    ap.add_argument("--stem", default="h2combustion_oh_scan",
                    help="results file names (results/STEM.{json,md,png})")
    ap.add_argument("--no-dft-scan", action="store_true", help="skip the PySCF points")
    args = ap.parse_args()
    models = bench.named_models(args.model, default={
        "scratch": str(bench.MODELS / "h2combustion" / "scratch.pt"),
        "FFPT": "pretrained:h2combustion",
        "FFPT-FT": str(bench.MODELS / "h2combustion" / "finetune.pt")})
    command = bench.announce()
    record, table = scan_and_plot(models, args.stem, with_dft=not args.no_dft_scan)
    bench.write_results(args.stem, {"command": command, "models": models, **record}, table,
                        command)


if __name__ == "__main__":
    main()
