"""Liquid water (the FFPT paper's bulk-water experiment): the flexible TIP3P monomer's
bending scan for any set of models, what of the monomer teacher's walls a model keeps, and
the liquid's structure and transport from the saved trajectories of a stability run (O-O
g(r), self-diffusion coefficient with standard errors over trajectories). Distances in
Angstrom, energies in eV, D in A^2/ps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..analysis.liquid import diffusion_coefficient, rdf, unwrap
from ..analysis.scans import angle_scan
from ..analysis.statistics import standard_error
from ..calculators import FFPTCalculator
from ..sampling import relax
from .systems import get_system

#: DeePMD folders of the bulk-water data set used for training and for testing
TRAIN_FOLDERS = ("data_0", "data_1", "data_2")
TEST_FOLDER = "data_3"
#: the bulk-water data's cubic cell edge (A), 64 molecules
LIQUID_CELL_A = 12.444661
#: closest contacts (A) between the pre-training liquid's copies: O-O outside TIP3P's
#: Lennard-Jones wall, O-H and H-H at hydrogen-bond distances
COPY_DISTANCES = {(8, 8): 2.4, (1, 8): 1.5, (1, 1): 1.5}


def pretraining_frames(n_monomers: int = 50000, n_liquid: int = 2000, seed: int = 0,
                       cell=None, show_progress: bool = True):
    """The water pre-training set (issue 13, item 5): ``n_monomers`` rattled flexible-TIP3P
    monomers (sigma 0.2 A), each alone in the liquid's periodic cell (its images lie beyond
    the cutoff), and ``n_liquid`` frames of 64 rattled monomers at random positions and
    orientations in that cell (closest contacts :data:`COPY_DISTANCES`) labelled by the full
    flexible TIP3P (Coulomb and Lennard-Jones between molecules, PME). Monomers alone do not
    transfer to the liquid (RESULTS.md 2b): the network must see intermolecular edges.
    Seeds ``seed .. seed + 3``; ``cell`` (3, 3) A defaults to the data's cube;
    ``show_progress``: bars with rate and ETA (the liquid frames take about a second each
    on one core). Returns ``(frames, description)``."""
    from ase.data import chemical_symbols

    from ..data import Frames
    from ..forcefields.tip3p import TIP3PLiquidCalculator
    from ..sampling import molecule_copies
    from .systems import sample_system
    cell = np.eye(3) * LIQUID_CELL_A if cell is None else np.asarray(cell, float)
    monomers = sample_system("water", n_monomers, sigma=0.2, seed=seed,
                             show_progress=show_progress)
    parts = [molecule_copies(monomers, 1, cell, seed=seed + 2)]
    if n_liquid:
        copies = sample_system("water", 64 * n_liquid, sigma=0.2, seed=seed + 1,
                               show_progress=show_progress)
        parts.append(molecule_copies(copies, 64, cell, min_distance=COPY_DISTANCES,
                                     seed=seed + 3, teacher=TIP3PLiquidCalculator(),
                                     show_progress=show_progress))
    edge = np.round(np.diag(cell), 6).tolist()
    closest = ", ".join(f"{chemical_symbols[b]}-{chemical_symbols[a]} {d:g} A"
                        for (a, b), d in COPY_DISTANCES.items())
    text = (f"{n_monomers} rattled flexible-TIP3P monomers (sigma 0.2 A), each alone in a "
            f"periodic cell of {edge} A"
            + (f", and {n_liquid} frames of 64 rattled monomers at random in that cell "
               f"(closest {closest}) labelled by the full flexible TIP3P (PME)"
               if n_liquid else "") + f"; seeds {seed}..{seed + 3}")
    return Frames.concatenate(parts), text


def monomer_angle_scan(models: dict, angles) -> tuple:
    """``(theta0, curves)``: energy (eV) along the H-O-H angle (degrees) with both O-H bonds
    at the flexible-TIP3P minimum length, for the teacher and each model (name ->
    checkpoint), each relative to its own energy at the TIP3P angle ``theta0``."""
    calc, ref, _ = get_system("water")
    mono = relax(ref, calc)
    o = int(np.nonzero(mono.numbers == 8)[0][0])
    h1, h2 = (int(i) for i in np.nonzero(mono.numbers == 1)[0])
    theta0 = float(mono.get_angle(h1, o, h2))
    calcs = {"flexible TIP3P": calc}
    calcs.update({name: FFPTCalculator.from_checkpoints(ckpt, dtype="float64")
                  for name, ckpt in models.items()})
    curves = {name: angle_scan(c, mono, h1, o, h2, angles)
              - angle_scan(c, mono, h1, o, h2, [theta0])[0] for name, c in calcs.items()}
    return theta0, curves


def wall_retention(models: dict, n_frames: int = 3000, seed: int = 1000,
                   closest_A: float = 0.5) -> dict:
    """How much of the flexible-TIP3P monomer's walls each model (name -> checkpoint) keeps
    (issue 13, item 7): :func:`~ffpt_ase.analysis.walls.wall_retention` on ``n_frames``
    held-out rattled monomers (sigma 0.2 A, seed ``seed``; the shipped pre-training uses
    seed 0) and the O-H, O-H and H-H contact scans of the relaxed monomer. Energies in eV,
    forces in eV/A."""
    from ..analysis.walls import wall_retention as retention
    from .systems import sample_system
    calc, ref, _ = get_system("water")
    frames = sample_system("water", n_frames, sigma=0.2, seed=seed, show_progress=False)
    out = retention(models, {"H2O": (calc, relax(ref, calc))}, frames, closest_A=closest_A)
    return {**out, "rattled_seed": seed}


def liquid_properties(folder: str | Path, summary: dict, skip_ps: float, save_fs: float,
                      element: int = 8) -> dict | None:
    """O-O g(r) and the self-diffusion coefficient D of each trajectory that did not fail in
    a stability run (its ``traj_NNN.traj`` files, frames every ``save_fs`` fs, the first
    ``skip_ps`` ps left out as equilibration); per-trajectory values, their mean and standard
    error. None when no trajectory has at least 10 frames left."""
    from ase.io import Trajectory

    if not save_fs > 0 or skip_ps < 0:
        raise ValueError(f"need save_fs > 0 and skip_ps >= 0, got {save_fs}, {skip_ps}")
    gs, ds, r, msd_curves = [], [], None, []
    for t in summary["trajectories"]:
        if t["failed"]:
            continue
        with Trajectory(str(Path(folder) / f"traj_{t['trajectory']:03d}.traj")) as tr:
            images = list(tr)
        images = images[round(skip_ps * 1000.0 / save_fs):]
        if len(images) < 10:
            continue
        r, g = rdf(images[::4], element, element, r_max=6.0, n_bins=120)
        gs.append(g)
        sel = images[0].numbers == element
        pos = unwrap(np.array([a.positions[sel] for a in images]), images[0].cell)
        d = diffusion_coefficient(pos, save_fs)
        ds.append(d["D_A2_per_ps"])
        msd_curves.append((d["t_ps"], d["msd_A2"]))
    if not gs:
        return None
    gs, ds = np.array(gs), np.array(ds)
    peak = int(np.argmax(gs.mean(axis=0)))
    g_sem = standard_error(gs)   # (None for one trajectory)
    return {"n_trajectories": len(gs), "r_A": r.tolist(),
            "g_OO_mean": gs.mean(axis=0).tolist(),
            "g_OO_sem": None if g_sem is None else g_sem.tolist(),
            "first_peak_r_A": float(r[peak]),
            "first_peak_height": float(gs.mean(axis=0)[peak]),
            "first_peak_height_sem": None if g_sem is None else float(g_sem[peak]),
            "D_A2_per_ps_each": ds.tolist(), "D_A2_per_ps_mean": float(ds.mean()),
            "D_A2_per_ps_sem": standard_error(ds),
            "msd": [(t.tolist(), m.tolist()) for t, m in msd_curves]}


# ------------------------------------------------------------------------------------------
# Why monomer pre-training does or does not transfer to the liquid (issue 13, item 5): what a
# model does with the edges it never saw in pre-training.

def water_molecules(atoms) -> np.ndarray:
    """Molecule index of every atom of a water system (its O's index among the O atoms):
    each H belongs to its nearest O, by the minimum image where periodic."""
    from ase.geometry import get_distances
    z = atoms.numbers
    o, h = np.flatnonzero(z == 8), np.flatnonzero(z == 1)
    if len(h) != 2 * len(o) or len(o) + len(h) != len(z):
        raise ValueError(f"not a water system: {len(o)} O, {len(h)} H, {len(z)} atoms")
    _, d = get_distances(atoms.positions[h], atoms.positions[o], cell=atoms.cell,
                         pbc=atoms.pbc)
    mol = np.empty(len(z), int)
    mol[o] = np.arange(len(o))
    mol[h] = np.argmin(d, axis=1)
    if np.bincount(mol[h], minlength=len(o)).max() != 2:
        raise ValueError("H atoms do not pair up into H2O molecules by nearest O")
    return mol


def forces_by_edges(model, atoms, keep=None) -> np.ndarray:
    """Forces (eV/A, float64) of a :class:`~ffpt_ase.model.potential.Potential` on ``atoms``,
    with only the edges for which ``keep(edge_i, edge_j)`` (atom index arrays) is true (all
    edges without ``keep``)."""
    import torch

    from ..data.graphs import batch_from_atoms
    batch = batch_from_atoms(atoms, model.elements, model.cutoff).to(dtype=torch.float64)
    if keep is not None:
        mask = torch.as_tensor(keep(batch.edge_i.numpy(), batch.edge_j.numpy()))
        batch.edge_i, batch.edge_j = batch.edge_i[mask], batch.edge_j[mask]
        batch.shift_frac = batch.shift_frac[mask]
    return model(batch, forces=True)["forces"].detach().numpy()


def _rms(x) -> float:
    return float(np.sqrt(np.mean(np.asarray(x) ** 2)))


def transfer_diagnostics(model, liquid, n_frames: int = 8, distances=(2.6, 3.0, 3.5, 4.0, 4.5,
                                                                       4.9),
                         cluster_sizes=(0, 1, 2, 4, 8, 16), seed: int = 0) -> dict:
    """What a model does with intermolecular edges, measured on liquid frames (a
    :class:`~ffpt_ase.data.frames.Frames` of periodic water, with reference forces):

    * ``liquid``: force RMS (eV/A) with all edges, with the edges within molecules only, and
      of the reference; a monomer-pre-trained model whose trouble is the liquid's
      intermolecular edges is far off with them and close without them;
    * ``one_neighbour``: the largest change of the force on a monomer (eV/A) when one more
      monomer is put at each O-O distance (random orientations, the monomer teacher's answer
      is 0): large already for one neighbour means the radial filters at those distances
      are untrained (hypothesis a);
    * ``cluster``: force RMS on a central molecule of a liquid frame cut out with its K
      nearest molecules (no periodicity), for each K: growing with K means the unnormalised
      sum over neighbours is the trouble (hypothesis c);
    * ``filters``: mean |W_e e(r) c(r)| of the first layer's edge filter over the
      intramolecular range (0.8-1.8 A) and the intermolecular range (2.5-5 A).
    """
    import copy

    import torch
    from ase import Atoms

    from ..forcefields.tip3p import water_monomer
    rng = np.random.default_rng(seed)
    model = copy.deepcopy(model).double().eval()   # (the caller's model is left as it is)
    rows = []
    for k in rng.choice(len(liquid), size=min(n_frames, len(liquid)), replace=False):
        atoms = liquid.to_atoms(int(k))
        mol = water_molecules(atoms)
        full = forces_by_edges(model, atoms)
        intra = forces_by_edges(model, atoms, keep=lambda i, j: mol[i] == mol[j])
        rows.append((_rms(full), _rms(intra), _rms(liquid.forces[k][:len(atoms)])))
    rows = np.array(rows)
    out = {"liquid": {"frames": len(rows), "force_rms_all_edges": float(rows[:, 0].mean()),
                      "force_rms_intramolecular_edges": float(rows[:, 1].mean()),
                      "force_rms_reference": float(rows[:, 2].mean())}}
    # one neighbour at a time
    w = water_monomer()
    alone = forces_by_edges(model, w)[:3]
    response = []
    for d in distances:
        worst = []
        for _ in range(10):
            other = w.copy()
            other.rotate(rng.normal(size=3), float(rng.uniform(0, 360)), center=(0, 0, 0))
            direction = rng.normal(size=3)
            other.positions += d * direction / np.linalg.norm(direction)
            pair = w + other
            worst.append(float(np.abs(forces_by_edges(model, pair)[:3] - alone).max()))
        response.append({"O_O_A": float(d), "max_force_change": float(np.median(worst))})
    out["one_neighbour"] = response
    # clusters of K nearest molecules around one molecule of a liquid frame
    atoms = liquid.to_atoms(0)
    mol = water_molecules(atoms)
    centre = 0
    from ase.geometry import get_distances
    o = np.flatnonzero(atoms.numbers == 8)
    vec, dist = get_distances(atoms.positions[o[centre]], atoms.positions, cell=atoms.cell,
                              pbc=atoms.pbc)
    unwrapped = atoms.positions[o[centre]] + vec[0]       # nearest images around the centre
    order = np.argsort(dist[0][o])                         # molecules by O-O distance
    cluster = []
    for n in cluster_sizes:
        chosen = order[:n + 1]
        idx = np.flatnonzero(np.isin(mol, chosen))
        # a molecule's H atoms are placed by the minimum image from their own O
        pos = unwrapped[idx].copy()
        for m in chosen:
            sel = np.flatnonzero(mol[idx] == m)
            oo = sel[atoms.numbers[idx][sel] == 8][0]
            dvec, _ = get_distances(pos[oo], pos[sel], cell=atoms.cell, pbc=atoms.pbc)
            pos[sel] = pos[oo] + dvec[0]
        sub = Atoms(numbers=atoms.numbers[idx], positions=pos)
        f = forces_by_edges(model, sub)
        mine = mol[idx] == order[0]
        cluster.append({"molecules": int(n + 1), "force_rms_central": _rms(f[mine])})
    out["cluster"] = cluster
    # the first layer's edge filter along r
    r = torch.linspace(0.8, 5.0, 85, dtype=torch.float64)
    net = model.net
    with torch.no_grad():
        filt = net.edge_filters(net.radial(r) * net.envelope(r).unsqueeze(-1))
        first = filt[:, :net.n_features].abs().mean(dim=1).numpy()
    r = r.numpy()
    out["filters"] = {"intramolecular_0.8_1.8A": float(first[(r >= 0.8) & (r <= 1.8)].mean()),
                      "intermolecular_2.5_5A": float(first[(r >= 2.5) & (r <= 5.0)].mean()),
                      "r_A": r.tolist(), "mean_abs_first_layer": first.tolist()}
    return out
