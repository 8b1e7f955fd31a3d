"""Make a pre-training set for HO2 with the Q-Force teacher, then look at it.

    .venv/bin/python examples/rattle_and_label.py

Same as: ffpt-ase sample --system HO2 --n 100000 -o pt_ho2.npz --plot
"""

from ffpt_ase import QForceCalculator, RattleSampler
from ffpt_ase.analysis.plots import plot_frame_statistics
from ffpt_ase.forcefields.qforce import QForceParameters

params = QForceParameters.load()  # the shipped file; pass a path for your own
teacher = QForceCalculator(params)
reference = params.reference("HO2")  # relaxed with the teacher by the sampler

sampler = RattleSampler(teacher, reference, sigma=0.2, seed=0, teacher_name="qforce",
                        system_name="HO2")
frames = sampler.sample(100_000)
frames.save("pt_ho2.npz")
print(frames.summary())
print("plot:", plot_frame_statistics({"HO2": frames}, "pt_ho2.png"))
