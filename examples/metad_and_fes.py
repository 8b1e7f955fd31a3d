"""Well-tempered metadynamics of channel 09 (HO2 -> H + O2) with a trained model, then the
free-energy surface. Uses the fine-tuned model of `make demo` unless a checkpoint is given.

    .venv/bin/python examples/metad_and_fes.py [CHECKPOINT] [STEPS]

Same from the shell:
    ffpt-ase metad --reaction 09 --model demo_output/finetune/best.pt --steps 20000 -o runs/rxn09
    ffpt-ase fes runs/rxn09 -o runs/rxn09/fes
"""

import sys

from ffpt_ase.applications.h2combustion.metad import ChannelMetadConfig, run_channel_metadynamics
from ffpt_ase.applications.h2combustion.report import channel_fes_report

model = sys.argv[1] if len(sys.argv) > 1 else "demo_output/finetune/best.pt"
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 20000

# 300 K Langevin, friction 20/ps, 0.2 fs steps; the deck is plumed_inputs/rxn09.dat.
# Running this again continues the run (raise STEPS to extend it). For your own system use
# ffpt_ase.simulate.metad.run_metadynamics(MetadConfig(deck=..., start=..., model=...)).
summary = run_channel_metadynamics(ChannelMetadConfig(reaction="09", model=model, steps=steps,
                                                      seed=1, output="runs/rxn09"))
print(f"{summary['simulated_ps']:.2f} ps at {summary['ns_per_day']:.2f} ns/day; "
      f"unphysical frames: {100 * summary['unphysical_fraction']:.1f} %")

report = channel_fes_report("runs/rxn09", "runs/rxn09/fes")
print("Delta F(product - reactant) =",
      report.get("delta_f_product_minus_reactant_kJ_per_mol"), "kJ/mol")
print("plots:", [f for f in report["files"] if f.endswith(".png")])
