"""Hydrogen combustion: metadynamics of every shipped channel deck (issue 13, item 6).

For each of the 21 decks (``plumed_inputs/rxnNN.dat``: channels 01-19 with 06a/06b and
12a/12b) and each model, ``--walkers`` independent well-tempered walkers of ``--ps``
picoseconds each (the decks' protocol: 300 K, 5 kJ/mol hills every 100 steps on two
coordination numbers, 0.2 fs, Langevin friction 20/ps), advanced together on the ensemble
engine. Reported per channel: the walkers that failed (non-finite dynamics), the fraction of
checked frames with unphysical species (mean +- standard error over walkers: colliding atoms,
or a fragment that is neither a reactant nor a product of the channel) and what those frames
held (their fragments: another channel's species, or colliding atoms), and
F(product) - F(reactant) from each walker's hills (mean +- standard error over walkers).

Every walker set resumes from its run folder (``--work``), so the channels can be run over
several sessions; a finished channel is read back. By default the committed FFPT-FT model
of ``benchmarks/h2combustion.py``.

    .venv/bin/python benchmarks/h2combustion_channels.py --walkers 4 --ps 25
    .venv/bin/python benchmarks/h2combustion_channels.py --model scratch=PATH \\
        --model FFPT-FT=PATH --channels 09 01

Writes ``benchmarks/results/h2combustion_channels.{json,md}`` and
``h2combustion_channels.png`` (``--stem`` for other names: channel 01's longer walkers,
``--channels 01 --walkers 8 --ps 150 --stem h2combustion_rxn01_long``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import bench_common as bench
import numpy as np

from ffpt_ase.applications.h2combustion.channels import channel_ids, get_channel
from ffpt_ase.applications.h2combustion.metad import ChannelMetadConfig
from ffpt_ase.applications.h2combustion.workflows import compare_walker_sets

DEFAULT_MODELS = {"FFPT-FT": str(bench.MODELS / "h2combustion" / "finetune.pt")}
METAD = ChannelMetadConfig(reaction="09")   # the walkers' settings: the driver's defaults
TIMESTEP_FS = METAD.timestep_fs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", action="append", default=[], metavar="NAME=PATH",
                    help="a model to run (repeatable; default: FFPT-FT=" +
                         DEFAULT_MODELS["FFPT-FT"] + ")")
    bench.add_walker_options(ap, walkers=4)
    ap.add_argument("--ps", type=float, default=25.0, help="picoseconds per walker")
    ap.add_argument("--channels", nargs="*", default=None,
                    help="channel ids (default: all 21 decks)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", default=str(bench.WORK / "h2combustion_channels"))
    ap.add_argument("--stem", default="h2combustion_channels",
                    help="results names: results/STEM.{json,md,png} and the kept walker sets "
                         "results/STEM_rxnNN_MODEL_walkers.json (another stem for another "
                         "protocol, e.g. longer walkers of one channel)")
    args = ap.parse_args()
    if not args.stem or "/" in args.stem:
        sys.exit(f"--stem must be a plain file name stem, got {args.stem!r}")
    bench.check_walkers(args.walkers)
    if not args.ps > 0:
        sys.exit(f"need --ps > 0, got {args.ps}")
    try:
        channels = [get_channel(c).id for c in (args.channels or channel_ids())]
    except ValueError as err:
        sys.exit(str(err))
    models = bench.named_models(args.model, DEFAULT_MODELS)
    steps = int(round(args.ps * 1000 / TIMESTEP_FS))
    command = bench.announce()
    import torch
    torch.set_num_threads(args.threads)

    work = Path(args.work)
    results, t0 = {}, time.perf_counter()
    jobs = [(c, name) for c in channels for name in models]
    ran = []   # wall seconds of the channel runs that simulated here (not read back)
    for i, (cid, name) in enumerate(jobs):
        elapsed = time.perf_counter() - t0
        eta = f", about {np.mean(ran) * (len(jobs) - i) / 60:.0f} min left" if ran else ""
        print(f"[{i + 1}/{len(jobs)}] rxn {cid} ({get_channel(cid).reaction}), {name}: "
              f"{args.walkers} walkers x {args.ps:g} ps ({elapsed / 60:.1f} min so far{eta})",
              flush=True)
        t_job = time.perf_counter()
        results.setdefault(cid, {})[name] = bench.channel_walkers(
            cid, models[name], args.walkers, steps, work / f"rxn{cid}_{name}",
            f"{args.stem}_rxn{cid}_{name}", threads=args.threads,
            compile=args.compile)
        if time.perf_counter() - t_job > 30.0:
            ran.append(time.perf_counter() - t_job)

    names = list(models)
    lengths = sorted({bench.walker_length(m, TIMESTEP_FS) for per in results.values()
                      for m in per.values() if "steps" in m})
    lines = [f"Metadynamics of every deck: independent walkers x ps per channel and model "
             f"{', '.join(lengths) or '-'} ({METAD.temperature_K:g} K, {TIMESTEP_FS:g} fs, "
             f"friction {METAD.friction_per_ps:g}/ps, {METAD.dtype}). Cells: failed walkers; "
             f"unphysical fraction of checked frames (mean +- sem over walkers; pooled over their "
             f"frames); F(product) - F(reactant) in kJ/mol (mean +- sem over the walkers "
             f"with a Delta F (both basins visited, and in the second half of the run)).", "",
             "| channel | reaction | " + " | ".join(
                 f"{n} | {n}: what the flagged frames held" for n in names) + " |",
             "|---|---|" + "---|---|" * len(names)]
    for cid in channels:
        cells = []
        for name in names:
            cells.append("; ".join(bench.walker_cells(results[cid][name])))
            cells.append(bench.unphysical_species_cell(results[cid][name]))
        lines.append(f"| {cid} | {get_channel(cid).reaction} | " + " | ".join(cells) + " |")
    comparison = {}
    if len(names) == 2:   # the second model against the first, channel by channel
        a, b = names
        lines += ["", f"{b} against {a} ({b} - {a}; 95 % bootstrap intervals, permutation "
                  "p-values over walkers; Fisher's exact test on the failed walkers):", "",
                  f"| channel | failed walkers, {b} vs {a} | unphysical fraction, {b} - {a} | "
                  f"Delta F (kJ/mol), {b} - {a} |", "|---|---|---|---|"]
        for cid in channels:
            comparison[cid] = compare_walker_sets(results[cid][a], results[cid][b])
            lines.append(f"| {cid} | "
                         + " | ".join(bench.walker_comparison_cells(comparison[cid])) + " |")
    plot(results, channels, names, args.stem)
    bench.write_results(args.stem, {
        "command": command, "models": models, "walkers": args.walkers, "ps_per_walker": args.ps,
        "steps": steps, "timestep_fs": TIMESTEP_FS,
        "channels": results, "comparison": comparison}, "\n".join(lines), command)


def plot(results: dict, channels: list, names: list, stem: str) -> None:
    """Unphysical fraction per channel (mean +- sem over walkers), one bar per model."""
    from ffpt_ase.analysis.plots import label_and_save, subplots
    fig, ax = subplots(figsize=(max(6.0, 0.45 * len(channels) * len(names) + 2), 4))
    width = 0.8 / len(names)
    x = np.arange(len(channels))
    for k, name in enumerate(names):
        mean = [results[c][name]["unphysical_fraction_mean"] for c in channels]
        sem = [results[c][name]["unphysical_fraction_sem"] for c in channels]
        ax.bar(x + (k - (len(names) - 1) / 2) * width,
               [np.nan if m is None else m for m in mean], width,
               yerr=[0.0 if s is None else s for s in sem], capsize=2, label=name)
    ax.set_xticks(x, channels, rotation=90)
    ax.set_ylim(0, 1)
    label_and_save(fig, ax, bench.RESULTS / f"{stem}.png", "channel",
                   "unphysical fraction of frames", "metadynamics of every deck",
                   legend=True)


if __name__ == "__main__":
    main()
