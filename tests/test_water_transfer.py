"""Pieces of the water-transfer investigation (issue 13, item 5): gases of non-interacting
teacher-labelled copies, fine-tuning with a refitted force scale, and the diagnostics of what
a model does with intermolecular edges."""

import json

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.geometry import get_distances

from ffpt_ase.applications.systems import sample_system
from ffpt_ase.applications.water import (forces_by_edges, transfer_diagnostics,
                                         water_molecules)
from ffpt_ase.calculators import FFPTCalculator
from ffpt_ase.data.frames import Frames
from ffpt_ase.forcefields.tip3p import FlexibleTIP3PCalculator, water_monomer
from ffpt_ase.model.potential import Potential
from ffpt_ase.sampling import molecule_copies

from conftest import water_box


@pytest.fixture(scope="module")
def monomers():
    return sample_system("water", 400, seed=3, show_progress=False)


def test_copies_carry_the_teachers_labels_and_keep_their_distance(monomers):
    cell = np.eye(3) * 9.0
    gas = molecule_copies(monomers, 8, cell, min_distance=2.2, seed=1)
    assert len(gas) == 50 and gas.positions.shape == (50, 24, 3) and gas.pbc.all()
    reference = Atoms()
    for k in range(8):   # the teacher's topology: 8 separate TIP3P monomers
        w = water_monomer()
        w.positions += [6.0 * k, 0.0, 0.0]
        reference += w
    teacher = FlexibleTIP3PCalculator()
    teacher.bind(reference)
    e, f = teacher.evaluate_batch(gas.positions)
    np.testing.assert_allclose(gas.energy, e, atol=1e-10)
    np.testing.assert_allclose(gas.forces, f, atol=1e-9)     # forces rotated with the copy
    np.testing.assert_allclose(gas.energy[0], monomers.energy[:8].sum(), atol=1e-12)
    molecule = np.repeat(np.arange(8), 3)
    for k in (0, 17, 49):
        d = gas.to_atoms(k).get_all_distances(mic=True)
        assert d[molecule[:, None] != molecule[None, :]].min() >= 2.2
    assert gas.metadata["kind"] == "non-interacting copies"
    assert gas.metadata["teacher"] == monomers.metadata["teacher"]


def test_interacting_copies_carry_the_liquid_teachers_labels(monomers):
    from ffpt_ase.forcefields.tip3p import TIP3PLiquidCalculator
    cell = np.eye(3) * 9.0
    plain = molecule_copies(monomers[:48], 8, cell, min_distance=1.8, seed=2)
    teacher = TIP3PLiquidCalculator()
    gas = molecule_copies(monomers[:48], 8, cell, min_distance=1.8, seed=2, teacher=teacher)
    np.testing.assert_array_equal(gas.positions, plain.positions)   # the same placements
    for k in (0, 5):
        atoms = gas.to_atoms(k)
        atoms.calc = TIP3PLiquidCalculator()
        assert gas.energy[k] == pytest.approx(atoms.get_potential_energy(), abs=1e-9)
        np.testing.assert_allclose(gas.forces[k], atoms.get_forces(), atol=1e-9)
    # the intermolecular terms are there: labels differ from the sum of the monomers'
    assert np.abs(gas.energy - plain.energy).min() > 1e-3
    assert gas.metadata["kind"] == "interacting copies (TIP3PLiquidCalculator)"
    assert gas.metadata["teacher"] == monomers.metadata["teacher"]   # one force field


def test_copies_keep_a_distance_per_element_pair(monomers):
    limits = {(8, 8): 2.6, (1, 8): 1.5, (1, 1): 1.5}
    gas = molecule_copies(monomers[:80], 8, np.eye(3) * 9.0, min_distance=limits, seed=4)
    molecule = np.repeat(np.arange(8), 3)
    other = molecule[:, None] != molecule[None, :]
    oo = np.outer(gas.numbers == 8, gas.numbers == 8)
    closest_oo, closest_any = [], []
    for k in range(len(gas)):
        d = gas.to_atoms(k).get_all_distances(mic=True)
        closest_oo.append(d[other & oo].min())
        closest_any.append(d[other].min())
    assert min(closest_oo) >= 2.6 and min(closest_any) >= 1.5
    assert min(closest_any) < 2.6      # O-H contacts closer than the O-O limit do occur
    assert gas.metadata["min_distance_angstrom"] == {"8-8": 2.6, "1-8": 1.5, "1-1": 1.5}
    with pytest.raises(ValueError, match=r"no distance for the element pairs \[\(1, 1\)\]"):
        molecule_copies(monomers[:16], 8, np.eye(3) * 9.0, min_distance={(8, 8): 2.6,
                                                                        (8, 1): 1.5})


def test_copies_that_cannot_fit_are_refused(monomers):
    with pytest.raises(ValueError, match="could not place 40 copies"):
        molecule_copies(monomers, 40, np.eye(3) * 5.0, min_distance=2.5, max_tries=20)
    with pytest.raises(ValueError, match="one molecule"):
        molecule_copies(Frames(**{**monomers.__dict__, "pbc": np.ones(3, bool)}), 2,
                        np.eye(3) * 9.0)


def test_water_molecules_pair_each_h_with_its_o():
    box = water_box(6.0)
    box.positions += [4.5, 0.0, 0.0]        # molecules across the periodic boundary
    box.wrap()
    mol = water_molecules(box)
    assert np.bincount(mol).tolist() == [3, 3, 3]
    o = np.flatnonzero(box.numbers == 8)
    for h in np.flatnonzero(box.numbers == 1):
        _, d = get_distances(box.positions[h], box.positions[o[mol[h]]], cell=box.cell,
                             pbc=True)
        assert d[0, 0] < 1.1


def test_forces_by_edges_all_and_intramolecular():
    torch.manual_seed(0)
    model = Potential([1, 8], 8, 2, 6).double()
    box = water_box(6.0)
    box.calc = FFPTCalculator(model, dtype="float64")
    np.testing.assert_allclose(forces_by_edges(model, box), box.get_forces(), atol=1e-10)
    far = water_monomer() + water_monomer()
    far.positions[3:] += [20.0, 0.0, 0.0]      # no intermolecular edge at all
    mol = water_molecules(far)
    np.testing.assert_allclose(forces_by_edges(model, far, keep=lambda i, j: mol[i] == mol[j]),
                               forces_by_edges(model, far), atol=1e-12)
    near = water_box(6.0)
    mol = water_molecules(near)
    assert np.abs(forces_by_edges(model, near, keep=lambda i, j: mol[i] == mol[j])
                  - forces_by_edges(model, near)).max() > 1e-6


def test_diagnostics_see_no_neighbour_beyond_the_cutoff():
    torch.manual_seed(0)
    model = Potential([1, 8], 8, 2, 6)
    images = []
    for k in range(3):
        box = water_box(6.0)
        box.rattle(0.05, seed=k)
        box.calc = FFPTCalculator(model, dtype="float64")
        box.get_forces()
        images.append(box)
    liquid = Frames.from_atoms_list(images)
    d = transfer_diagnostics(model, liquid, n_frames=2, distances=(3.0, 6.5),
                             cluster_sizes=(0, 2))
    far = {r["O_O_A"]: r["max_force_change"] for r in d["one_neighbour"]}
    assert far[6.5] < 1e-12 and far[3.0] > 1e-6
    assert d["liquid"]["force_rms_all_edges"] == pytest.approx(
        d["liquid"]["force_rms_reference"], rel=1e-6)     # the model is its own reference
    assert [c["molecules"] for c in d["cluster"]] == [1, 3]
    assert 0 < d["cluster"][0]["force_rms_central"] < np.inf
    f = d["filters"]
    assert f["intramolecular_0.8_1.8A"] > 0 and f["intermolecular_2.5_5A"] > 0


def test_fine_tuning_can_refit_the_force_scale(monomers, tmp_path):
    from ffpt_ase.training.config import TrainConfig
    from ffpt_ase.training.trainer import train
    monomers.save(tmp_path / "mono.npz")
    small = dict(features=8, interactions=1, basis=6, epochs=1, batch_size=16)
    train(TrainConfig(stage="pretrain", data=str(tmp_path / "mono.npz"),
                      output=str(tmp_path / "pt"), **small))
    liquid = []
    torch.manual_seed(1)
    teacher = FFPTCalculator(Potential([1, 8], 8, 1, 6), dtype="float64")
    for k in range(12):
        box = water_box(6.0)
        box.rattle(0.05, seed=k)
        box.calc = teacher
        box.get_forces()
        liquid.append(box)
    Frames.from_atoms_list(liquid).save(tmp_path / "liquid.npz")
    for refit in (False, True):
        out = tmp_path / f"ft_{refit}"
        train(TrainConfig(stage="finetune", init=str(tmp_path / "pt" / "best.pt"),
                          data=str(tmp_path / "liquid.npz"), output=str(out), n_val=2,
                          refit_scale=refit, epochs=1, batch_size=4))
        norm = json.loads((out / "config.json").read_text())["normalization"]
        pre = torch.load(tmp_path / "pt" / "best.pt", weights_only=True)["model_state"]["scale"]
        if refit:   # the RMS force component of each element's atoms in training frames
            scale = list(norm["scale (refitted)"].values())
            frames = Frames.load(tmp_path / "liquid.npz")
            train_idx = np.load(out / "split.npz")["train"]
            for k, z in enumerate((1, 8)):
                sel = frames.numbers == z
                rms = np.sqrt(np.mean(frames.forces[train_idx][:, sel] ** 2))
                assert scale[k] == pytest.approx(rms, rel=1e-9)
            assert not np.allclose(scale, pre.numpy(), rtol=0.1)
        else:
            np.testing.assert_allclose(list(norm["scale (kept)"].values()), pre.numpy())


def test_sets_of_different_periodicity_are_not_joined(monomers):
    gas = molecule_copies(monomers[:16], 8, np.eye(3) * 9.0, min_distance=2.0)
    with pytest.raises(ValueError, match="different periodicity"):
        Frames.concatenate([monomers[:4], gas])
    alone = molecule_copies(monomers[:4], 1, np.eye(3) * 9.0)    # each monomer in the cell
    joined = Frames.concatenate([alone, gas])
    assert joined.pbc.all() and len(joined) == 6
    np.testing.assert_allclose(joined.energy[:4], monomers.energy[:4], atol=1e-12)


def test_the_water_pretraining_set_is_monomers_alone_and_a_tip3p_liquid():
    from ffpt_ase.applications.water import COPY_DISTANCES, LIQUID_CELL_A, pretraining_frames
    from ffpt_ase.forcefields.tip3p import TIP3PLiquidCalculator
    frames, text = pretraining_frames(n_monomers=6, n_liquid=1, seed=5)
    atoms = frames.numbers_per_frame > 0
    assert len(frames) == 7 and atoms.sum(1).tolist() == [3] * 6 + [192]
    assert np.allclose(frames.cell[0], np.eye(3) * LIQUID_CELL_A)
    # a monomer alone carries the monomer teacher's label; the liquid frame the full TIP3P's
    mono = frames.to_atoms(0)       # made whole across the cell's boundary, then alone
    o = int(np.nonzero(mono.numbers == 8)[0][0])
    vectors, _ = get_distances(mono.positions[o], mono.positions, cell=mono.cell, pbc=True)
    mono = Atoms(mono.numbers, positions=mono.positions[o] + vectors[0])
    teacher = FlexibleTIP3PCalculator()
    teacher.bind(water_monomer())   # the bonds of the reference, as the sampler's teacher
    mono.calc = teacher
    assert frames.energy[0] == pytest.approx(mono.get_potential_energy(), abs=1e-9)
    liquid = frames.to_atoms(6)
    liquid.calc = TIP3PLiquidCalculator()
    assert frames.energy[6] == pytest.approx(liquid.get_potential_energy(), abs=1e-9)
    d = liquid.get_all_distances(mic=True)
    other = np.repeat(np.arange(64), 3)[:, None] != np.repeat(np.arange(64), 3)[None, :]
    oo = np.outer(liquid.numbers == 8, liquid.numbers == 8)
    assert d[other & oo].min() >= COPY_DISTANCES[(8, 8)] and d[other].min() >= 1.5
    assert "6 rattled flexible-TIP3P monomers" in text and "seeds 5..8" in text
    # the same seed gives the same set
    again, _ = pretraining_frames(n_monomers=6, n_liquid=1, seed=5)
    np.testing.assert_array_equal(again.positions, frames.positions)
