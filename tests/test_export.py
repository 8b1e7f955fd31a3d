"""The exported TorchScript model (``ffpt-ase export``) and the torch neighbour list it
carries: loaded by torch alone, in a process that cannot import ffpt_ase, it gives the
calculator's energies, forces and stress."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from ase.build import molecule
from ase.stress import full_3x3_to_voigt_6_stress

from ffpt_ase.calculators import FFPTCalculator
from ffpt_ase.cli.main import main
from ffpt_ase.data.graphs import build_batch
from ffpt_ase.model.export import (ANGSTROM_PER_NM, KJ_PER_MOL_PER_EV, ExportedPotential,
                                   export_potential)
from conftest import perturbed_potential, water_box


@pytest.fixture(scope="module")
def model():
    """A small random H/C/O model with weights far from their initialisation."""
    m = perturbed_potential(seed=3, noise=0.2)
    m.shift.copy_(torch.tensor([-13.6, -1029.0, -2041.8], dtype=torch.float64))
    m.scale.copy_(torch.tensor([0.7, 1.3, 1.1], dtype=torch.float64))
    return m


def structures():
    rng = np.random.default_rng(1)
    ethanol = molecule("CH3CH2OH")
    ethanol.rattle(0.1, rng=rng)
    box = water_box(6.0)
    box.rattle(0.05, rng=rng)
    tri = water_box(5.0)                        # cutoff 5 A > half of every cell width
    tri.set_cell([[5.0, 0, 0], [1.2, 4.6, 0], [0.4, 0.9, 4.8]], scale_atoms=True)
    slab = water_box(6.0)
    slab.pbc = [True, True, False]
    return {"ethanol": ethanol, "water box": box, "triclinic": tri, "slab": slab}


LOADER = r"""
import builtins, json, sys
real_import = builtins.__import__
def guarded(name, *a, **k):
    if name.split('.')[0] == 'ffpt_ase':
        raise ImportError('ffpt_ase must not be needed')
    return real_import(name, *a, **k)
builtins.__import__ = guarded
import torch
model = torch.jit.load(sys.argv[1])
out = {}
for name, s in json.load(open(sys.argv[2])).items():
    r = model(torch.tensor(s['numbers']), torch.tensor(s['positions'], dtype=torch.float64),
              torch.tensor(s['cell'], dtype=torch.float64), torch.tensor(s['pbc']))
    out[name] = {k: v.tolist() for k, v in r.items()}
out['_meta'] = {'elements': list(model.elements), 'cutoff': model.cutoff,
                'ffpt_ase_loaded': 'ffpt_ase' in sys.modules}
print(json.dumps(out))
"""


def test_exported_model_in_a_process_without_ffpt_ase_matches_the_calculator(model,
                                                                               tmp_path):
    path = export_potential(model, tmp_path / "model.pt")
    cases = structures()
    (tmp_path / "in.json").write_text(json.dumps({
        k: {"numbers": a.numbers.tolist(), "positions": a.positions.tolist(),
            "cell": a.cell.array.tolist(), "pbc": a.pbc.tolist()} for k, a in cases.items()}))
    run = subprocess.run([sys.executable, "-c", LOADER, str(path), str(tmp_path / "in.json")],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    assert got["_meta"] == {"elements": [1, 6, 8], "cutoff": 5.0, "ffpt_ase_loaded": False}
    calc = FFPTCalculator(model, dtype="float64")
    for name, atoms in cases.items():
        atoms.calc = calc
        assert abs(got[name]["energy"] - atoms.get_potential_energy()) < 1e-5, name
        np.testing.assert_allclose(got[name]["forces"], atoms.get_forces(), atol=1e-8,
                                   err_msg=name)
        if atoms.pbc.all():
            np.testing.assert_allclose(full_3x3_to_voigt_6_stress(
                np.array(got[name]["stress"])), atoms.get_stress(), atol=1e-9, err_msg=name)
        else:
            assert "stress" not in got[name]


def test_exported_forces_and_stress_are_derivatives_of_its_energy(model):
    exported = torch.jit.script(ExportedPotential(model))
    atoms = structures()["triclinic"]
    args = (torch.tensor(atoms.numbers), torch.tensor(atoms.cell.array),
            torch.tensor(atoms.pbc))

    def energy(pos, cell):
        return float(exported(args[0], torch.tensor(pos), torch.tensor(cell), args[2])["energy"])

    out = exported(args[0], torch.tensor(atoms.positions), *args[1:])
    h, x0, c0 = 1e-5, atoms.positions.copy(), atoms.cell.array.copy()
    for a, k in [(0, 0), (4, 2), (7, 1)]:
        xp, xm = x0.copy(), x0.copy()
        xp[a, k] += h
        xm[a, k] -= h
        fd = -(energy(xp, c0) - energy(xm, c0)) / (2 * h)
        assert abs(fd - float(out["forces"][a, k])) < 1e-6 * max(1.0, abs(fd))
    volume = abs(np.linalg.det(c0))
    for i, j in [(0, 0), (1, 2)]:      # stress = (1/V) dE/d(strain), strain symmetric
        eps = np.zeros((3, 3))
        eps[i, j] = eps[j, i] = h

        def strained(e):
            return energy(x0 @ (np.eye(3) + e), c0 @ (np.eye(3) + e))

        fd = (strained(eps) - strained(-eps)) / (2 * h) / volume
        fd /= 2 if i != j else 1
        assert abs(fd - float(out["stress"][i, j])) < 1e-6 * max(1.0, abs(fd))


def test_float32_export_is_close_to_float64(model, tmp_path):
    p32 = export_potential(model, tmp_path / "m32.pt", dtype="float32")
    p64 = export_potential(model, tmp_path / "m64.pt", dtype="float64")
    atoms = structures()["ethanol"]
    args = (torch.tensor(atoms.numbers), torch.tensor(atoms.positions),
            torch.tensor(atoms.cell.array), torch.tensor(atoms.pbc))
    a, b = torch.jit.load(str(p32))(*args), torch.jit.load(str(p64))(*args)
    assert a["energy"].dtype == torch.float64      # shifts and the sum stay float64
    assert a["forces"].dtype == torch.float32 and b["forces"].dtype == torch.float64
    assert abs(float(a["energy"] - b["energy"])) < 1e-3
    assert float((a["forces"].double() - b["forces"]).abs().max()) < 1e-3


def test_exported_model_refuses_elements_it_was_not_trained_for(model):
    exported = torch.jit.script(ExportedPotential(model))
    with pytest.raises(Exception, match="elements this model was not trained for"):
        exported(torch.tensor([1, 17]), torch.zeros(2, 3, dtype=torch.float64),
                 torch.zeros(3, 3, dtype=torch.float64), torch.zeros(3, dtype=torch.bool))


def test_openmm_force_uses_nm_and_kj_per_mol(model, tmp_path):
    for atoms in (structures()["ethanol"], structures()["water box"]):
        path = export_potential(model, tmp_path / "omm.pt", openmm_atoms=atoms)
        force = torch.jit.load(str(path))
        box = torch.tensor(atoms.cell.array) / ANGSTROM_PER_NM if atoms.pbc.all() else None
        energy, forces = force(torch.tensor(atoms.positions) / ANGSTROM_PER_NM, box)
        atoms.calc = FFPTCalculator(model, dtype="float64")
        assert abs(float(energy) - KJ_PER_MOL_PER_EV * atoms.get_potential_energy()) < 1e-6
        np.testing.assert_allclose(forces.numpy(), atoms.get_forces() * KJ_PER_MOL_PER_EV
                                   * ANGSTROM_PER_NM, atol=1e-6)


def test_export_command_writes_a_loadable_file(model, tmp_path, capsys):
    ckpt = tmp_path / "best.pt"
    torch.save(model.checkpoint(stage="finetune"), ckpt)
    assert main(["export", str(ckpt), "-o", str(tmp_path / "out" / "model.pt")]) == 0
    assert "TorchScript, float64" in capsys.readouterr().out
    loaded = torch.jit.load(str(tmp_path / "out" / "model.pt"))
    assert loaded.source == str(ckpt) and list(loaded.elements) == [1, 6, 8]
    atoms = structures()["ethanol"]
    out = loaded(torch.tensor(atoms.numbers), torch.tensor(atoms.positions),
                 torch.tensor(atoms.cell.array), torch.tensor(atoms.pbc))
    atoms.calc = FFPTCalculator.from_checkpoints(ckpt, dtype="float64")
    assert abs(float(out["energy"]) - atoms.get_potential_energy()) < 1e-5


def _edges(batch):
    return sorted(zip(batch.edge_i.tolist(), batch.edge_j.tolist(),
                      map(tuple, batch.shift_frac.long().tolist())))


def test_torch_neighbour_list_finds_the_same_edges_as_numpy_and_matscipy():
    rng = np.random.default_rng(7)
    pos = rng.normal(size=(4, 7, 3)) * 2.0
    num = np.array([[1, 8, 8, 1, 0, 0, 0], [1, 1, 8, 8, 1, 8, 1], [8, 8, 0, 0, 0, 0, 0],
                    [1, 0, 0, 0, 0, 0, 0]])     # padded molecules of 4, 7, 2 and 1 atoms
    a = build_batch(pos, num, [1, 8], 5.0)
    b = build_batch(pos, num, [1, 8], 5.0, neighbour_list="torch")
    assert _edges(a) == _edges(b) and len(_edges(a)) > 10
    cells = [np.diag([6.0, 6.0, 6.0]), np.array([[4.0, 0, 0], [1.5, 3.5, 0], [0.7, 0.3, 3.1]]),
             np.diag([12.0, 3.0, 9.0])]
    for cell in cells:
        for pbc in ([True] * 3, [True, True, False]):
            p = rng.uniform(size=(2, 5, 3)) @ cell
            n = np.array([[1, 8, 1, 8, 1], [8, 8, 1, 0, 0]])
            kw = dict(cell=np.stack([cell, cell]), pbc=pbc)
            a = build_batch(p, n, [1, 8], 5.0, **kw)
            b = build_batch(p, n, [1, 8], 5.0, neighbour_list="torch", **kw)
            assert _edges(a) == _edges(b), (cell, pbc)
            assert len(_edges(a)) > 0


def test_torch_neighbour_list_refuses_a_singular_periodic_cell():
    with pytest.raises(ValueError, match="singular cell"):
        build_batch(np.zeros((1, 2, 3)) + [[0, 0, 0], [1, 0, 0]], [1, 1], [1], 5.0,
                    cell=np.diag([5.0, 5.0, 0.0])[None], pbc=[True, True, False],
                    neighbour_list="torch")
