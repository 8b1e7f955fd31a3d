"""NewtonNet potential: gradients, invariances, periodic cells, robustness (float64)."""

import numpy as np
import pytest
import torch
from ase import Atoms

from conftest import finite_difference_forces, random_rotation
from ffpt_ase.data.graphs import batch_from_atoms, build_batch
from ffpt_ase.model.potential import Potential

torch.manual_seed(0)


def small_model(elements=(1, 6, 8), cutoff=5.0, **kw):
    torch.manual_seed(0)
    m = Potential(list(elements), n_features=16, n_interactions=2, n_basis=8, cutoff=cutoff, **kw)
    # non-trivial shift/scale so that they are exercised
    m.shift.copy_(torch.linspace(-1.0, 1.0, len(m.elements), dtype=torch.float64))
    m.scale.copy_(torch.linspace(0.5, 2.0, len(m.elements), dtype=torch.float64))
    return m.double().eval()


def run(model, atoms, **kw):
    return model(batch_from_atoms(atoms, model.elements, model.cutoff).to(dtype=torch.float64),
                 **kw)


def molecule(seed=0, n=9):
    rng = np.random.default_rng(seed)
    numbers = rng.choice([1, 6, 8], size=n)
    return Atoms(numbers=numbers, positions=rng.uniform(0, 3.5, size=(n, 3)))


def periodic(seed=0):
    rng = np.random.default_rng(seed)
    cell = np.array([[4.1, 0.3, 0.0], [0.2, 3.9, 0.1], [0.0, 0.4, 4.4]])
    return Atoms("OH2OH2OH2", positions=rng.uniform(0, 4, (9, 3)), cell=cell, pbc=True)


def test_forces_are_minus_energy_gradient():
    m, atoms = small_model(), molecule()
    f = run(m, atoms)["forces"].detach().numpy()

    def energy(p):
        a = atoms.copy()
        a.positions = p
        return run(m, a, forces=False)["energy"].item()

    np.testing.assert_allclose(f, finite_difference_forces(energy, atoms.positions, 1e-5),
                               atol=1e-7)


def test_invariance_and_equivariance():
    m, atoms = small_model(), molecule(1)
    out = run(m, atoms)
    rng = np.random.default_rng(2)
    rot = random_rotation(rng)
    moved = atoms.copy()
    moved.positions = atoms.positions @ rot.T + rng.normal(size=3) * 10
    out2 = run(m, moved)
    assert out2["energy"].item() == pytest.approx(out["energy"].item(), abs=1e-10)
    np.testing.assert_allclose(out2["forces"].detach().numpy(),
                               out["forces"].detach().numpy() @ rot.T, atol=1e-10)
    perm = rng.permutation(len(atoms))
    permuted = atoms[perm]
    out3 = run(m, permuted)
    assert out3["energy"].item() == pytest.approx(out["energy"].item(), abs=1e-10)
    np.testing.assert_allclose(out3["forces"].detach().numpy(),
                               out["forces"].detach().numpy()[perm], atol=1e-10)


def test_stress_matches_strain_finite_differences():
    m, atoms = small_model((1, 8), cutoff=3.0), periodic()
    stress = run(m, atoms, stress=True)["stress"][0].detach().numpy()
    h, V = 1e-6, atoms.get_volume()

    def energy(eps):
        a = atoms.copy()
        a.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
        return run(m, a, forces=False)["energy"].item()

    fd = np.zeros((3, 3))
    for i in range(3):
        for j in range(3):
            e = np.zeros((3, 3))
            e[i, j] += h / 2
            e[j, i] += h / 2
            fd[i, j] = (energy(e) - energy(-e)) / (2 * h) / V
    np.testing.assert_allclose(stress, fd, atol=1e-9)
    assert np.abs(stress).max() > 1e-6  # not trivially zero


def test_supercell_energy_is_extensive_and_image_interactions_count():
    m, atoms = small_model((1, 8), cutoff=3.0), periodic(3)
    e1 = run(m, atoms, forces=False)["energy"].item()
    e2 = run(m, atoms.repeat((2, 1, 1)), forces=False)["energy"].item()
    assert e2 / 2 == pytest.approx(e1, rel=1e-12)
    # a small cell (cutoff > cell) sees periodic images of itself, including of one atom
    single = Atoms("O", positions=[[0, 0, 0]], cell=np.eye(3) * 2.5, pbc=True)
    iso = single.copy()
    iso.pbc = False
    assert run(m, single, forces=False)["energy"].item() != pytest.approx(
        run(m, iso, forces=False)["energy"].item())


def test_no_nan_for_coincident_or_far_atoms():
    m = small_model()
    coincident = Atoms("OH", positions=[[0, 0, 0], [0, 0, 0]])
    out = run(m, coincident)
    assert torch.isfinite(out["energy"]).all() and torch.isfinite(out["forces"]).all()
    far = Atoms("OH", positions=[[0, 0, 0], [0, 0, 50.0]])
    out = run(m, far)
    assert torch.isfinite(out["forces"]).all() and out["forces"].abs().max() == 0.0


def test_cutoff_is_smooth():
    m = small_model()
    r = np.array([4.999999, 5.0, 5.000001])
    e = [run(m, Atoms("OO", positions=[[0, 0, 0], [0, 0, x]]), forces=False)["energy"].item()
         for x in r]
    assert e[0] == pytest.approx(e[2], abs=1e-9)


def test_batched_equals_single_frames_and_sizes_may_differ():
    m = small_model()
    a, b = molecule(4, 7), molecule(5, 4)
    pos = np.zeros((2, 7, 3))
    num = np.zeros((2, 7), int)
    pos[0], num[0] = a.positions, a.numbers
    pos[1, :4], num[1, :4] = b.positions, b.numbers
    out = m(build_batch(pos, num, m.elements, m.cutoff).to(dtype=torch.float64))
    ea, eb = run(m, a)["energy"].item(), run(m, b)["energy"].item()
    np.testing.assert_allclose(out["energy"].detach().numpy(), [ea, eb], rtol=1e-12)


def test_unknown_element_error():
    m = small_model((1, 8))
    with pytest.raises(ValueError, match=r"\['C'\] not known to the model"):
        run(m, Atoms("CO", positions=[[0, 0, 0], [0, 0, 1.1]]))


def test_normalization_fit_recovers_per_element_energies():
    from ffpt_ase.data import Frames
    m = small_model((1, 8))
    rng = np.random.default_rng(0)
    nums = rng.choice([1, 8], size=(200, 5))
    e = (nums == 1).sum(1) * -13.6 + (nums == 8).sum(1) * -2042.0
    fr = Frames(positions=rng.normal(size=(200, 5, 3)), numbers=nums, energy=e,
                forces=rng.normal(size=(200, 5, 3)) * 2.0)
    fit = m.fit_normalization(fr)
    assert fit["shift"][1] == pytest.approx(-13.6) and fit["shift"][8] == pytest.approx(-2042.0)
    assert fit["scale"][1] == pytest.approx(2.0, rel=0.1)


def test_float32_model_keeps_large_total_energies_exact():
    """Aspirin-like totals (-17,592 eV) must not be rounded to float32's 2 meV spacing."""
    m = small_model()
    m.shift.copy_(torch.tensor([-13.61234567, -1029.0123456, -2042.98765432], dtype=torch.float64))
    atoms = molecule(7, 21)
    e64 = run(m, atoms)["energy"].item()
    m32 = m.float()
    e32 = m32(batch_from_atoms(atoms, m32.elements, m32.cutoff).to(dtype=torch.float32))["energy"]
    assert e32.dtype == torch.float64 and m32.shift.dtype == torch.float64
    assert abs(e32.item() - e64) < 2e-4 and abs(e64) > 1.0e4


class _Payload:
    """Pickles to a call that would create a file when unpickled with weights_only=False."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_a_malicious_checkpoint_runs_no_code(tmp_path):
    """Checkpoints are read with weights_only=True: a pickle that would run code on loading
    is refused with a clear error and the code never runs."""
    from ffpt_ase.model.potential import CheckpointError, load_checkpoint
    marker = tmp_path / "pwned"
    bad = tmp_path / "best.pt"
    torch.save({"model": _Payload(marker)}, bad)
    with pytest.raises(CheckpointError, match="could not be read"):
        load_checkpoint(bad)
    assert not marker.exists()


def test_pretrained_names_resolve_and_unknown_ones_are_explained():
    from ffpt_ase.pretrained import resolve_checkpoint
    assert str(resolve_checkpoint("runs/x.pt")) == "runs/x.pt"
    with pytest.raises(FileNotFoundError, match="no shipped pre-trained model 'nope'"):
        resolve_checkpoint("pretrained:nope")
