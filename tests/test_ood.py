"""Out-of-distribution combustion frames (applications.h2combustion.ood): the geometries
are what their labels say, and labelling keeps labels and geometries together."""

import numpy as np
import pytest

from ffpt_ase.applications.h2combustion.ood import MULTIPLICITY, label_ood, ood_geometries


def test_each_geometry_is_the_change_its_label_names():
    geoms = ood_geometries()
    assert set(geoms) == set(MULTIPLICITY) and sum(len(v) for v in geoms.values()) == 16
    ho2 = dict(geoms["HO2"])
    for r in (0.55, 0.65, 0.75, 1.5, 2.0, 2.5, 3.0):
        assert ho2[f"O-H {r:g}"].get_distance(0, 2) == pytest.approx(r)
    water = dict(geoms["H2O"])
    assert water["H-O-H 45 deg"].get_angle(1, 0, 2) == pytest.approx(45.0)
    assert water["O-H 0.65"].get_distance(0, 1) == pytest.approx(0.65)
    hooh = dict(geoms["H2O2"])
    assert hooh["O-O-H 60 deg"].get_angle(0, 1, 3) == pytest.approx(60.0)
    assert dict(geoms["H2"])["H-H 0.45"].get_distance(0, 1) == pytest.approx(0.45)


def test_labels_at_a_cheap_level_keep_their_geometries(tmp_path):
    pytest.importorskip("pyscf", reason="PySCF not installed (extra 'abinitio')")
    frames = label_ood(tmp_path, xc="hf", basis="sto-3g", show_progress=False)
    assert len(frames) == 16 and list(frames.extras["species"][:7]) == ["HO2"] * 7
    geoms = [a for items in ood_geometries().values() for _, a in items]
    real = frames.numbers_per_frame > 0
    for k, atoms in enumerate(geoms):
        np.testing.assert_allclose(frames.positions[k][real[k]], atoms.positions, atol=1e-12)
    # relative to free atoms: a compressed H2 (0.45 A) lies above its dissociation limit
    # less than a stretched HO2 does below it; signs as physics has them
    e = dict(zip(frames.extras["label"], frames.energy))
    assert e["O-H 0.55"] > e["O-H 0.75"] and e["H-H 0.45"] > -4.0
    # a rerun takes everything from the checkpoints (no SCF: the same numbers at once)
    again = label_ood(tmp_path, xc="hf", basis="sto-3g", show_progress=False)
    np.testing.assert_array_equal(again.energy, frames.energy)


def test_dft_oh_scan_is_zero_at_the_reactant_and_continues_from_its_cache(tmp_path,
                                                                          monkeypatch):
    pytest.importorskip("pyscf", reason="PySCF not installed (extra 'abinitio')")
    from ffpt_ase import abinitio
    from ffpt_ase.applications.h2combustion.workflows import oh_scan
    cheap = {"xc": "hf", "basis": "sto-3g"}
    cache = tmp_path / "scan.json"
    out = oh_scan({}, dft_cache=cache, level=cheap, show_progress=False)
    r, e = out["dft"]
    assert out["dft_level"] == cheap and len(r) >= 26 and r[0] == pytest.approx(0.5)
    assert e[np.argmin(np.abs(r - out["r_eq"]))] == 0.0
    assert e[0] > 1.0                  # 0.5 A O-H: a wall, several eV above the reactant
    assert set(out["curves"]) == {"Q-Force teacher"}

    def no_scf(*args, **kwargs):
        raise AssertionError("the cache should have answered")
    monkeypatch.setattr(abinitio.PySCFCalculator, "calculate", no_scf)
    again = oh_scan({}, dft_cache=cache, level=cheap, show_progress=False)
    np.testing.assert_array_equal(again["dft"][1], e)
    # another level does not take this cache's numbers
    with pytest.raises(AssertionError, match="cache should have answered"):
        oh_scan({}, dft_cache=cache, level={"xc": "b3lyp", "basis": "sto-3g"},
                show_progress=False)
