"""``ffpt-ase demo`` (what ``make demo`` runs): the FFPT-FT pipeline for combustion channel
09 (HO2 -> H + O2) on embedded defaults, without any external data.

1. teachers: rattled Q-Force frames (the paper's Table 1) of the combustion species, plus a
   plot of the labels and of the teacher's O-H dissociation curve of HO2;
2. the pre-trained model: by default the shipped ``pretrained:h2combustion`` (a
   64-feature NewtonNet pre-trained on 100,000 such frames until its plateau rule held, by
   ``benchmarks/pretrain_shipped.py``; its provenance is printed), or, with
   ``--pretrain-minutes M``, a pre-training run here on the frames of step 1;
3. a small ab initio fine-tuning set labelled here with PySCF at UKS B3LYP/6-31G* (HO2 and
   its H-shifted isomer near the minimum, the O-H dissociation to H + O2 and the H shift)
   -- or, with ``--data``, frames of channel 09 from the combustion data set
   (wB97X-V/cc-pVTZ);
4. fine-tuning, then HO2 -> H + O2 between isolated species for the teacher, the labels'
   level, the fine-tuned model and the data set, side by side;
5. well-tempered metadynamics of channel 09 through ASE + PLUMED (5 ps);
6. FES from the hills, Delta F(product - reactant) between the chemistry basins with its
   error, and the fraction of unphysical frames.

Every stage writes into the output folder and is skipped (or resumed) when run again.
``--quick`` shrinks every stage to seconds (used by the tests).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..analysis.plots import plot_energy_scan, plot_frame_statistics, plot_learning_curve
from ..applications.h2combustion.workflows import (ab_initio_images, rattled_species_frames,
                                                   rattled_species_sets, reaction_energies_09,
                                                   teacher_oh_scan)
from ..data.frames import Frames

#: the demo's settings; ``pt_minutes=None`` starts from the shipped pre-trained model
FULL = dict(n_rattled=8000, features=64, interactions=3, pt_minutes=None,
            pretrained="h2combustion", ft_minutes=3.5, n_ab_initio=80,
            metad_steps=25000, basis="6-31g*")
QUICK = dict(n_rattled=300, features=8, interactions=1, pt_minutes=0.05, pretrained=None,
             ft_minutes=0.05, n_ab_initio=5, metad_steps=300, basis="sto-3g")


def _say(msg):
    print(msg, flush=True)


def run_demo(output: str | Path = "demo_output", n_per_species: int | None = None,
             seed: int = 0, data: str | None = None, quick: bool = False,
             pretrain_minutes: float | None = None):
    from ..analysis.metad_report import delta_f_line
    from ..applications.h2combustion.report import channel_fes_report
    from ..training.config import TrainConfig
    from ..training.trainer import train

    p = dict(QUICK if quick else FULL)
    if n_per_species:
        p["n_rattled"] = n_per_species
    if pretrain_minutes is not None:
        if not pretrain_minutes > 0:
            raise ValueError(f"--pretrain-minutes must be > 0, got {pretrain_minutes}")
        p["pt_minutes"] = pretrain_minutes
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    stamps = {}

    # 1. teachers -----------------------------------------------------------------------
    _say(f"[1/6] Q-Force teacher: {p['n_rattled']} rattled frames per species (sigma 0.2 A)")
    sets = rattled_species_sets(p["n_rattled"], seed=seed)
    pt = rattled_species_frames(sets)
    pt_file = pt.save(out / "pretrain_qforce.npz")
    plot_frame_statistics({k: sets[k] for k in ("H2", "OH", "H2O", "HO2", "H2O2")},
                          out / "pretrain_labels.png")
    r = np.linspace(0.4, 3.0, 131)
    e = teacher_oh_scan(r)
    np.savetxt(out / "ho2_oh_scan_qforce.txt", np.column_stack([r, e]),
               header="r_OH [A]   E_QForce [eV] (zero: free atoms; everything else frozen)")
    plot_energy_scan({"Q-Force teacher": (r, e)}, out / "ho2_oh_scan_qforce.png",
                     "O-H distance [A]", "HO2 -> H + O2: teacher energy")
    _say(f"      {len(pt)} frames -> {pt_file}")
    stamps["teachers"] = time.perf_counter() - t_start

    # 2. pre-training ---------------------------------------------------------------------
    common = dict(batch_size=32, seed=seed, epochs=100000, threads=2)
    if p["pt_minutes"] is None:
        from ..pretrained import available
        info = available()[p["pretrained"]]
        init = f"pretrained:{p['pretrained']}"
        _say(f"[2/6] pre-trained model: the shipped {init} ({info['model']}; {info['frames']}; "
             f"{info['epochs']} epochs, {info['stop_reason']}; made by `{info['command']}`)")
        s_pt = {"final": info["training"], "shipped": init}
    else:
        _say(f"[2/6] pre-training NewtonNet ({p['features']} features, {p['interactions']} "
             f"interactions) on the Q-Force frames, {p['pt_minutes']} min budget")
        s_pt = train(TrainConfig(stage="pretrain", data=str(pt_file),
                                 output=str(out / "pretrain"), max_time_s=60 * p["pt_minutes"],
                                 features=p["features"], interactions=p["interactions"],
                                 **common))
        plot_learning_curve(out / "pretrain" / "log.csv", out / "pretrain" / "learning_curve.png")
        init = str(out / "pretrain" / "best.pt")
    stamps["pretrain"] = time.perf_counter() - t_start

    # 3. ab initio fine-tuning set --------------------------------------------------------
    if data:
        from ..data.readers import read_frames
        src = Path(data)
        files = [src / "npz" / "09_irc.npz", src / "npz" / "09_aimd.npz"] if src.is_dir() \
            else [src]
        parts = [read_frames(f) for f in files]
        rng = np.random.default_rng(seed)
        ft = Frames.concatenate([pr[np.sort(rng.permutation(len(pr))[:400])] for pr in parts])
        ft.metadata = {"teacher": "ab initio", "method": "wB97X-V/cc-pVTZ (data set)",
                       "source": [str(f) for f in files]}
        level = "wB97X-V/cc-pVTZ frames of channel 09 from the user's combustion data"
    else:
        from ..abinitio import PySCFCalculator, free_atom_energies, label_frames
        level = f"UKS B3LYP/{p['basis']} labels computed here with PySCF"
        _say(f"[3/6] ab initio fine-tuning set: {p['n_ab_initio']} channel-09 frames, {level}, "
             "relative to free atoms (the teacher's energy zero)")
        ft = label_frames(ab_initio_images(p["n_ab_initio"], seed),
                          PySCFCalculator(xc="b3lyp", basis=p["basis"], multiplicity=2),
                          checkpoint=out / "finetune_abinitio.partial.npz", show_progress=False,
                          atom_energies=free_atom_energies("OH", "b3lyp", p["basis"]))
    ft_file = ft.save(out / "finetune_abinitio.npz")
    if data:
        _say(f"[3/6] fine-tuning set: {len(ft)} frames, {level}")
    stamps["abinitio"] = time.perf_counter() - t_start

    # 4. fine-tuning ----------------------------------------------------------------------
    _say(f"[4/6] fine-tuning from the pre-trained model, {p['ft_minutes']} min budget")
    n_val = max(1, len(ft) // 10)
    s_ft = train(TrainConfig(stage="finetune", data=str(ft_file), init=init,
                             output=str(out / "finetune"), n_val=n_val,
                             max_time_s=60 * p["ft_minutes"], **common))
    plot_learning_curve(out / "finetune" / "log.csv", out / "finetune" / "learning_curve.png")
    stamps["finetune"] = time.perf_counter() - t_start
    level_calc = None
    if not data:
        from ..abinitio import PySCFCalculator
        level_calc = lambda mult: PySCFCalculator(xc="b3lyp", basis=p["basis"],  # noqa: E731
                                                  multiplicity=mult)
    energies = reaction_energies_09(out / "finetune" / "best.pt", level_calc,
                                    f"B3LYP/{p['basis']}")
    _say("      HO2 -> H + O2, isolated species [kJ/mol]:")
    for name, value in energies.items():
        _say(f"        {name:38s} {value:+8.1f}")

    # 5. metadynamics ---------------------------------------------------------------------
    from ..applications.h2combustion.metad import ChannelMetadConfig, run_channel_metadynamics
    steps = p["metad_steps"]
    _say(f"[5/6] well-tempered metadynamics of channel 09 through ASE + PLUMED: {steps} steps "
         f"of 0.2 fs ({steps * 0.2e-3:.1f} ps), 300 K, Langevin friction 20/ps")
    s_md = run_channel_metadynamics(ChannelMetadConfig(
        reaction="09", model=str(out / "finetune" / "best.pt"), steps=steps, seed=seed,
        output=str(out / "metad_rxn09")), show_progress=not quick)
    stamps["metad"] = time.perf_counter() - t_start

    # 6. free energy ----------------------------------------------------------------------
    _say("[6/6] free-energy surface from the hills, reweighting, convergence")
    s_fes = channel_fes_report(out / "metad_rxn09", out / "fes_rxn09")
    _say(f"      {delta_f_line(s_fes)}")
    for note in s_fes["notes"]:
        _say(f"      note: {note}")
    total = time.perf_counter() - t_start
    summary = {"wall_time_s": round(total, 1), "stage_end_s": {k: round(v, 1) for k, v in
                                                              stamps.items()},
               "fine_tuning_labels": level, "pretrain": s_pt["final"], "finetune": s_ft["final"],
               "ho2_to_h_o2_kJ_per_mol": energies,
               "metad": {k: s_md[k] for k in ("steps", "simulated_ps", "ns_per_day",
                                              "unphysical_fraction", "friction_per_ps",
                                              "temperature_window_means_K")},
               "fes": {k: v for k, v in s_fes.items()
                       if k.startswith("delta_f") or k in ("frames", "unphysical_fraction",
                                                           "notes")}}
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=1, default=str))
    _say(f"done in {total / 60:.1f} min. Fine-tuning labels: {level}.")
    _say(f"  pre-training data     {pt_file}")
    _say(f"  teacher plots         {out / 'pretrain_labels.png'}, {out / 'ho2_oh_scan_qforce.png'}")
    _say(f"  pre-trained model     {init}" + (" (learning_curve.png beside it)"
                                                 if p["pt_minutes"] is not None else ""))
    _say(f"  fine-tuning data      {ft_file}")
    _say(f"  fine-tuned model      {out / 'finetune' / 'best.pt'} (learning_curve.png beside it)")
    _say(f"  metadynamics          {out / 'metad_rxn09'} (HILLS, COLVAR, trajectory.traj, "
         f"events.jsonl); {s_md['ns_per_day']:.2f} ns/day, unphysical frames "
         f"{100 * s_md['unphysical_fraction']:.1f} %")
    _say(f"  free energy           {out / 'fes_rxn09'} (fes.png, fes_1d.png, convergence.png)")
    _say(f"  summary               {out / 'demo_summary.json'}")
    return summary
