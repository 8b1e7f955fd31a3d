"""Shared fixtures. Reference data are read from ../shared/data (or $FFPT_DATA_DIR); tests
that need them are skipped, with the reason printed, when the folder is absent."""

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("FFPT_DATA_DIR", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir():
    if not DATA_DIR.is_dir():
        pytest.skip(f"reference data folder {DATA_DIR} not found (set FFPT_DATA_DIR)")
    return DATA_DIR


def finite_difference_forces(calc_energy, positions, h=1e-5):
    """Central-difference forces -dE/dx of a function E(positions (atoms, 3))."""
    pos = np.array(positions, float)
    out = np.zeros_like(pos)
    for a in range(pos.shape[0]):
        for k in range(3):
            p = pos.copy()
            p[a, k] += h
            ep = calc_energy(p)
            p[a, k] -= 2 * h
            em = calc_energy(p)
            out[a, k] = -(ep - em) / (2 * h)
    return out


def random_rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


class SimulatedCrash(BaseException):
    """A crash at a write point (BaseException: no handler of the package catches it)."""


def crash_at_write(monkeypatch, k):
    """Make the ``k``-th write of any run folder crash right after it; returns the list of
    write points passed (names)."""
    from ffpt_ase.runfolder import RunFolder
    seen = []

    def after_write(self, name):
        seen.append(name)
        if len(seen) == k:
            raise SimulatedCrash(name)

    monkeypatch.setattr(RunFolder, "after_write", after_write)
    return seen


def interrupt_at_call(monkeypatch, owner, name, n):
    """Make the ``n``-th call of the method ``owner.name`` raise KeyboardInterrupt (Ctrl-C
    inside that call); earlier calls run as usual. ``monkeypatch.undo()`` restores it."""
    original = getattr(owner, name)
    calls = {"n": 0}

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(owner, name, interrupted)


def water_box(edge: float = 6.0, third=(1.0, 4.0, 2.0)):
    """Three TIP3P water molecules in a periodic cubic box of ``edge`` A (a small liquid-
    like test system; ``third``: where the third molecule goes)."""
    from ase import Atoms

    from ffpt_ase.forcefields.tip3p import water_monomer
    w = water_monomer()
    box = Atoms(cell=np.eye(3) * edge, pbc=True)
    for shift in ([1, 1, 1], [4, 4, 4], list(third)):
        m = w.copy()
        m.positions += shift
        box += m
    return box


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A checkpoint of a tiny random H/O model (8 features, 1 interaction)."""
    import torch

    from ffpt_ase.model.potential import Potential
    torch.manual_seed(0)
    m = Potential([1, 8], n_features=8, n_interactions=1, n_basis=6)
    m.shift.copy_(torch.tensor([-0.5, -1.0], dtype=torch.float64))
    path = tmp_path_factory.mktemp("m") / "tiny.pt"
    torch.save(m.checkpoint(stage="test"), path)
    return path


def perturbed_potential(seed: int = 0, noise: float = 0.1):
    """A small random H/C/O model (16 features, 2 interactions) with every weight moved by
    ``noise`` * N(0, 1), so that no part of it is at its (often zero) initialisation."""
    import torch

    from ffpt_ase.model.potential import Potential
    torch.manual_seed(seed)
    m = Potential([1, 6, 8], n_features=16, n_interactions=2, n_basis=8)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(noise * torch.randn_like(p))
    return m

