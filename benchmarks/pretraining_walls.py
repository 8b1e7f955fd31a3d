"""What pre-training leaves behind (issue 13, item 7): how much of the teacher's repulsive
walls the pre-trained, fine-tuned and scratch models keep, for each experiment.

* ``h2combustion``: held-out rattled frames of H, O, H2, O2, OH, H2O, HO2 and H2O2 (500
  each, seeds 1000.., never used for training) labelled by the Table 1 teacher, and every
  atom pair of each molecule pushed from its reference distance to 0.5 A.
* ``water``: 3,000 held-out rattled monomers (seed 1000) labelled by flexible TIP3P, and
  the monomer's three atom pairs.
* ``aspirin``: 3,000 held-out rattled aspirin frames (seed 1000) labelled by GAFF2, and
  every bond and the methyl group's three H-H pairs.

Errors are binned by the teacher's energy above equilibrium. The models default to the
committed ones (``benchmarks/models/<system>/{scratch,finetune}.pt``) and the shipped
pre-trained model of the system, which must be the one the committed fine-tuning started
from (else one line and exit 1); a default that does not exist yet is left out, and
``--model NAME=PATH`` replaces or adds one (e.g. a run still in training).

    .venv/bin/python benchmarks/pretraining_walls.py h2combustion
    .venv/bin/python benchmarks/pretraining_walls.py water --model FFPT=PATH

Writes ``benchmarks/results/walls_<system>.{json,md}`` and ``..._scans.png``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

import bench_common as bench
import numpy as np

from ffpt_ase.analysis.plots import label_and_save, subplots
from ffpt_ase.pretrained import resolve_checkpoint


#: system -> (its teacher in words, the module with its wall_retention, that function's
#: frame-count argument)
RETENTION = {"h2combustion": ("Table 1 teacher", "ffpt_ase.applications.h2combustion.workflows",
                              "n_per_species"),
             "water": ("flexible TIP3P", "ffpt_ase.applications.water", "n_frames"),
             "aspirin": ("GAFF2", "ffpt_ase.applications.aspirin", "n_frames")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("system", nargs="?", default="h2combustion",
                    choices=sorted(RETENTION))
    ap.add_argument("--model", action="append", default=[], metavar="NAME=PATH",
                    help="a model to measure (replaces the default of that name)")
    ap.add_argument("--frames", type=int, default=None,
                    help="held-out rattled frames (h2combustion: per species; default 500, "
                         "else 3000)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if args.frames is not None and args.frames < 1:
        sys.exit(f"--frames must be at least 1, got {args.frames}")
    import torch
    torch.set_num_threads(args.threads)
    system = args.system
    models = {"FFPT": f"pretrained:{system}",
              "scratch": str(bench.MODELS / system / "scratch.pt"),
              "FFPT-FT": str(bench.MODELS / system / "finetune.pt")}
    given = bench.named_models(args.model)
    models.update(given)
    if not ({"FFPT", "FFPT-FT"} & set(given)) and (bench.MODELS / system / "finetune.pt").exists():
        # the committed FFPT-FT must have started from the shipped FFPT it is compared with
        models["FFPT"] = str(bench.finetuned_from(system, bench.WORK / system, [models["FFPT"]]))
    for name, path in list(models.items()):   # (the --model ones are checked already)
        try:
            there = resolve_checkpoint(path).exists()
        except FileNotFoundError:                 # a shipped model not made yet
            there = False
        if not there:
            print(f"[walls] {name}: {path} not there yet, left out", flush=True)
            del models[name]
    if not models:
        sys.exit("no model to measure")
    command = bench.announce()
    teacher, module, size = RETENTION[system]
    n = args.frames or (500 if system == "h2combustion" else 3000)
    out = importlib.import_module(module).wall_retention(models, **{size: n})
    names = list(models)
    rat = out["rattled"]
    bins = rat["bins_eV"]
    lines = [f"Held-out rattled frames ({rat['frames']}, {teacher} labels): force MAE "
             "(eV/A) / relative-energy MAE (eV) / retained fraction of the teacher's "
             "energy above equilibrium (median; 1 = wall kept, 0 = flat, < 0 = hole)", "",
             "| E_teacher - E_eq (eV) | n | " + " | ".join(names) + " |",
             "|---|---|" + "---|" * len(names)]
    for k in range(len(bins) - 1):
        row = rat[names[0]][k]
        if not row["n"]:
            continue
        cells = []
        for name in names:
            r = rat[name][k]
            cells.append(f"{r['forces_mae']:.3g} / {r['energy_mae']:.3g} / "
                         f"{_number(r['retained'], '.2f')}")
        lines.append(f"| {bins[k]:g}-{bins[k + 1]:g} | {row['n']} | " + " | ".join(cells) + " |")
    scans = out["contact_scans"]
    lines += ["", "Close-contact scans: E(0.5 A) - E(r_ref) in eV (ratio to the teacher's)", "",
              "| molecule, pair | r_ref (A) | teacher | " + " | ".join(names) + " |",
              "|---|---|---|" + "---|" * len(names)]
    for key, s in scans.items():
        cells = [f"{s[n]['wall_eV']:.2f} ({_number(s[n]['wall_ratio'], '.2f')})" for n in names]
        lines.append(f"| {key} | {s['distances_A'][0]:.2f} | {s['teacher']['wall_eV']:.2f} | "
                     + " | ".join(cells) + " |")
    ncol = 4
    nrow = int(np.ceil(len(scans) / ncol))
    fig, axes = subplots(nrow, ncol, figsize=(3.2 * ncol, 2.6 * nrow))
    axes = np.atleast_1d(axes).ravel()
    for ax, (key, s) in zip(axes, scans.items()):
        for n in ["teacher"] + names:
            ax.plot(s["distances_A"], s[n]["energy_eV"], label=n,
                    **({"color": "k", "ls": "--"} if n == "teacher" else {}))
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("distance [A]")
        ax.set_ylabel("E - E(r_ref) [eV]")
    for ax in axes[len(scans):]:
        ax.axis("off")
    axes[0].legend(fontsize=7)
    label_and_save(fig, axes[0], bench.RESULTS / f"walls_{system}_scans.png")
    result = {"command": command, "models": models, **out}
    bench.write_results(f"walls_{system}", result, "\n".join(lines), command)


def _number(value, spec: str) -> str:
    """A table cell: ``value`` formatted, or ``-`` when there is none (no finite ratio)."""
    return "-" if value is None else format(value, spec)


if __name__ == "__main__":
    main()
