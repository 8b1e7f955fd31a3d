"""FES tools: HILLS -> FES against PLUMED's sum_hills, c(t) against PLUMED's CALC_RCT, and
reweighting/convergence on a 1D double well whose exact free energy is known."""

import numpy as np
import pytest
from ase import Atoms, units
from ase.calculators.calculator import Calculator, all_changes

from ffpt_ase.analysis.fes import (KB_KJMOL, basin_delta_f, convergence, ct_series,
                                   fes_from_hills, plumed_sum_hills, read_hills,
                                   read_plumed_table, reweighted_fes, reweighting_weights,
                                   statistical_inefficiency)

plumed = pytest.importorskip("plumed", reason="PLUMED kernel (hillclimber) not installed")
KJ = units.kJ / units.mol
BARRIER = 10.0  # kJ/mol


class DoubleWell(Calculator):
    """U = B (x^2 - 1)^2 + 50 (y^2 + z^2) kJ/mol (x, y, z in A), one particle."""
    implemented_properties = ["energy", "forces"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        x, y, z = self.atoms.positions[0]
        self.results["energy"] = (BARRIER * (x * x - 1) ** 2 + 50 * (y * y + z * z)) * KJ
        self.results["forces"] = -np.array([[4 * BARRIER * x * (x * x - 1), 100 * y,
                                             100 * z]]) * KJ


@pytest.fixture(scope="module")
def plumed_run(tmp_path_factory):
    """3000 steps of WT metadynamics of the double well through ASE + PLUMED."""
    from ase.calculators.plumed import Plumed
    from ase.md.langevin import Langevin
    folder = tmp_path_factory.mktemp("dw")
    setup = ["UNITS LENGTH=A TIME=fs ENERGY=kj/mol", "p: POSITION ATOM=1",
             f"metad: METAD ARG=p.x SIGMA=0.1 HEIGHT=1.0 PACE=50 TEMP=300 BIASFACTOR=6 "
             f"FILE={folder}/HILLS GRID_MIN=-3 GRID_MAX=3 GRID_BIN=600 CALC_RCT RCT_USTRIDE=1",
             f"PRINT ARG=p.x,metad.bias,metad.rct STRIDE=10 FILE={folder}/COLVAR"]
    atoms = Atoms("H", positions=[[-1.0, 0, 0]])
    with Plumed(DoubleWell(), setup, units.fs, atoms=atoms, kT=units.kB * 300,
                log=str(folder / "plumed.log")) as calc:
        atoms.calc = calc
        Langevin(atoms, timestep=units.fs, temperature_K=300, friction=0.01, fixcm=False,
                 rng=np.random.default_rng(0)).run(3000)
    return folder


def test_fes_matches_plumed_sum_hills(plumed_run, tmp_path):
    mins, maxs, bins = [-1.8], [1.8], [90]
    ref_file = plumed_sum_hills(plumed_run / "HILLS", tmp_path / "fes.dat", mins, maxs, bins)
    fields, ref, _ = read_plumed_table(ref_file)
    ours = fes_from_hills(plumed_run / "HILLS", mins, maxs, bins)
    np.testing.assert_allclose(ours.axes[0], ref[:, 0], atol=1e-9)
    assert np.abs(ours.free_energy - (ref[:, 1] - ref[:, 1].min())).max() < 0.1
    hills = read_hills(plumed_run / "HILLS")
    # PLUMED stores WT heights times gamma/(gamma-1): 1 kJ/mol hills with gamma = 6 -> 1.2
    assert hills.heights[0] == pytest.approx(1.2) and hills.biasfactor == 6.0


def test_ct_matches_plumed_calc_rct(plumed_run):
    hills = read_hills(plumed_run / "HILLS")
    _, col, _ = read_plumed_table(plumed_run / "COLVAR")
    t_h, ct = ct_series(hills, 300.0, [-3], [3], [600])
    k = np.searchsorted(t_h, col[:, 0], side="right") - 1
    ours = np.where(k >= 0, ct[np.clip(k, 0, None)], 0.0)
    assert np.abs(ours - col[:, 3]).max() < 1e-3
    assert col[-1, 3] > 1.0  # non-trivial c(t)


def _brownian_wt_metad(tmp_path, n_steps=400_000, seed=0):
    """Overdamped WT metadynamics in U(x) = B (x^2-1)^2 written as PLUMED files."""
    rng = np.random.default_rng(seed)
    T, gamma, w0, sigma, pace, dt, D = 300.0, 8.0, 1.0, 0.1, 200, 1.0, 0.005  # fs, A^2/fs
    kT = KB_KJMOL * T
    grid = np.linspace(-3, 3, 1201)
    V = np.zeros_like(grid)
    x, rows, hills = -1.0, [], []
    noise = rng.normal(size=n_steps) * np.sqrt(2 * D * dt)
    dgrid = grid[1] - grid[0]
    for n in range(n_steps):
        k = int((x + 3) / dgrid)
        bias = V[k] + (V[k + 1] - V[k]) * ((x + 3) / dgrid - k)
        dbias = (V[k + 1] - V[k]) / dgrid
        if n % pace == 0:
            w = w0 * np.exp(-bias / (kT * (gamma - 1)))
            V += w * np.exp(-0.5 * ((grid - x) / sigma) ** 2)
            hills.append((n * dt, x, sigma, w * gamma / (gamma - 1), gamma))
        if n % 20 == 0:
            rows.append((n * dt, x, bias))
        force = -4 * BARRIER * x * (x * x - 1) - dbias
        x = float(np.clip(x + D / kT * force * dt + noise[n], -2.9, 2.9))
    with open(tmp_path / "HILLS", "w") as fh:
        fh.write("#! FIELDS time x sigma_x height biasf\n")
        for h in hills:
            fh.write(" ".join(f"{v:.10g}" for v in h) + "\n")
    with open(tmp_path / "COLVAR", "w") as fh:
        fh.write("#! FIELDS time x metad.bias\n")
        for r in rows:
            fh.write(" ".join(f"{v:.10g}" for v in r) + "\n")
    return tmp_path


def test_reweighting_and_fes_recover_exact_double_well(tmp_path):
    folder = _brownian_wt_metad(tmp_path)
    hills = read_hills(folder / "HILLS")
    _, col, _ = read_plumed_table(folder / "COLVAR")
    t, x, bias = col.T
    logw = reweighting_weights(t, bias, hills, 300.0, [-3], [3], [600])
    late = t > 0.2 * t[-1]
    rw = reweighted_fes(x[late], logw[late], bins=24, range_=(-1.2, 1.2))
    exact = BARRIER * (rw.axes[0] ** 2 - 1) ** 2
    err = rw.free_energy - (exact - exact.min())
    assert np.abs(err - err.mean()).max() < 1.5, err
    fes = fes_from_hills(hills, [-1.2], [1.2], [48])
    exact = BARRIER * (fes.axes[0] ** 2 - 1) ** 2
    err = fes.free_energy - (exact - exact.min())
    assert np.abs(err - err.mean()).max() < 1.5, err
    # symmetric wells: Delta F = 0 within its error; the error bars are finite
    conv = convergence(logw, t * 1e-3, x < 0, x > 0, n_points=5)
    assert abs(conv["delta_f"][-1]) < max(3 * conv["error"][-1], 1.0)
    assert all(e is not None and np.isfinite(e) for e in conv["error"][1:])
    assert basin_delta_f(logw, x < -0.5, x > 0.5)["delta_f"] == pytest.approx(
        conv["delta_f"][-1], abs=1.5)


def _ar1(n, phi, rng):
    x = np.zeros(n)
    eps = rng.normal(size=n)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + eps[i]
    return x


def test_statistical_inefficiency_of_a_known_process():
    """AR(1) with coefficient phi has g = (1 + phi) / (1 - phi)."""
    rng = np.random.default_rng(1)
    assert statistical_inefficiency(_ar1(200000, 0.8, rng)) == pytest.approx(9.0, rel=0.1)
    assert statistical_inefficiency(rng.normal(size=50000)) == pytest.approx(1.0, abs=0.1)
    assert statistical_inefficiency(np.ones(100)) == 1.0


def test_delta_f_and_its_error_on_a_correlated_series_with_known_answer():
    """Two-state series with P(B)/P(A) = e^{-2} under unbiased weights: the estimate is within
    its error of 2 kT, the error grows with the correlation, and 200 repeats show it is the
    right size (the z-scores' spread is about 1)."""
    kT = KB_KJMOL * 300
    rng = np.random.default_rng(2)
    z, errs = [], []
    for _ in range(200):
        # correlated state sequence: stay with probability 0.95
        p_b = np.exp(-2) / (1 + np.exp(-2))
        state = np.zeros(4000, bool)
        state[0] = rng.random() < p_b
        flip = rng.random(4000)
        for i in range(1, 4000):
            stay = flip[i] < 0.95
            state[i] = state[i - 1] if stay else rng.random() < p_b
        r = basin_delta_f(np.zeros(4000), ~state, state)
        z.append((r["delta_f"] - 2 * kT) / r["error"])
        errs.append(r["error"])
        assert r["statistical_inefficiency"] > 10
    assert abs(np.mean(z)) < 0.3 and 0.7 < np.std(z) < 1.4


def test_delta_f_reports_empty_basins_in_words():
    r = basin_delta_f(np.zeros(10), np.ones(10, bool), np.zeros(10, bool))
    assert r["delta_f"] is None and "basin B" in r["note"]


def test_a_basin_seen_only_while_the_bias_built_gives_no_delta_f():
    """A walker that leaves its start (A) in its first 2 ps of 50 and reaches B late:
    reweighting across that gap measures the run's history, so no Delta F; once A is
    revisited late, the estimate is the one without the time check."""
    kT = KB_KJMOL * 300.0
    t = np.linspace(0.0, 50.0, 5001)                    # ps
    a, b = t < 2.0, (t > 30.0) & (t < 32.0)
    logw = np.where(a, 0.0, -20.0)                      # any weights
    r = basin_delta_f(logw, a, b, 300.0, ("the reactant basin", "the product basin"),
                      times=t)
    assert r["delta_f"] is None and r["error"] is None
    assert r["last_visit"] == {"the reactant basin": pytest.approx(1.99)}
    assert "reactant basin last at 1.99 of a run to 50" in r["note"]
    untimed = basin_delta_f(logw, a, b)
    assert r["delta_f_all_frames"] == pytest.approx(untimed["delta_f"])
    assert untimed["delta_f"] == pytest.approx(kT * 20.0 - kT * np.log(200 / 200), rel=1e-3)
    back = a | ((t > 40.0) & (t < 41.0))                # the walker returns to A at 40 ps
    late = basin_delta_f(logw, back, b, times=t)
    assert late["delta_f"] == pytest.approx(basin_delta_f(logw, back, b)["delta_f"])
    assert late["note"] is None
    early_b = basin_delta_f(logw, back, (t > 5.0) & (t < 6.0), times=t)   # B only early
    assert early_b["delta_f"] is None and list(early_b["last_visit"]) == ["basin B"]
    with pytest.raises(ValueError, match="one time per frame"):
        basin_delta_f(logw, a, b, times=t[:10])


def test_fes_report_walls_unphysical_frames_and_run_temperature(tmp_path):
    """A synthetic channel-09 run: known reweighted populations, a frame on a wall with a
    huge wall bias, unphysical O + OH frames; the report excludes the unphysical frames,
    does not let the wall frame dominate, reads T from state.json and writes no NaN."""
    import json

    from ffpt_ase.applications.h2combustion.report import channel_fes_report as fes_report
    folder = tmp_path / "run"
    folder.mkdir()
    T = 500.0
    kT = KB_KJMOL * T
    (folder / "state.json").write_text(json.dumps({"config": {"reaction": "09",
                                                              "temperature_K": T}}))
    # one tiny hill: the bias is ~0, so weights are ~1 apart from the walls
    (folder / "HILLS").write_text("#! FIELDS time cn1 cn2 sigma_cn1 sigma_cn2 height biasf\n"
                                  "#! SET kerneltype stretched-gaussian\n"
                                  + "".join(f"{t} 5.0 5.0 0.05 0.05 1e-9 20\n"
                                            for t in range(1, 12)))
    rows = []
    ho2 = (1.33, 0.97, 1.85)        # r_1_2 (O-O), r_1_3 (O1-H), r_2_3 (O2-H)
    h_o2 = (1.21, 3.5, 3.9)
    split = (3.0, 0.97, 3.3)        # O + OH: unphysical for channel 09
    states = [ho2] * 600 + [h_o2] * 200 + [split] * 200
    for k, (oo, o1h, o2h) in enumerate(states):
        wall = 300.0 * kT if k == 700 else 0.0   # one product frame deep in a wall
        rows.append(f"{10.0 * k} 0.5 0.5 {oo} {o1h} {o2h} 0.0 {wall}")
    (folder / "COLVAR").write_text("#! FIELDS time cn1 cn2 r_1_2 r_1_3 r_2_3 metad.bias "
                                   "walls.bias\n" + "\n".join(rows) + "\n")
    s = fes_report(folder, tmp_path / "fes")
    assert s["temperature_K"] == T
    assert s["frames"] == {"reactant": 600, "product": 200, "transition": 0, "unphysical": 200}
    assert s["unphysical_fraction"] == pytest.approx(0.2)
    assert s["delta_f_product_minus_reactant_kJ_per_mol"] == pytest.approx(
        -kT * np.log(200 / 600), abs=1e-6)
    assert s["delta_f_walls_reweighted_kJ_per_mol"] < -100 * kT  # what the walls would do
    assert any("walls" in n for n in s["notes"])
    text = (tmp_path / "fes" / "fes_summary.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert (tmp_path / "fes" / "convergence.png").exists()
    # a different analysis temperature is allowed but noted
    s2 = fes_report(folder, tmp_path / "fes2", temperature=300.0)
    assert any("run was at 500" in n for n in s2["notes"])


def test_malformed_plumed_files(tmp_path):
    (tmp_path / "bad").write_text("1 2 3\n")
    with pytest.raises(ValueError, match="FIELDS"):
        read_plumed_table(tmp_path / "bad")
    (tmp_path / "col").write_text("#! FIELDS time x\n0 1\n")
    with pytest.raises(ValueError, match="not a HILLS"):
        read_hills(tmp_path / "col")
    with pytest.raises(FileNotFoundError):
        read_hills(tmp_path / "missing")


def test_fes_report_gives_a_bound_when_the_product_was_not_reached(tmp_path):
    import json

    from ffpt_ase.applications.h2combustion.report import channel_fes_report as fes_report
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "state.json").write_text(json.dumps({"config": {"reaction": "09",
                                                              "temperature_K": 300.0}}))
    # 40 hills of 5 kJ/mol (stored x gamma/(gamma-1)) stacked on the reactant
    (folder / "HILLS").write_text("#! FIELDS time cn1 cn2 sigma_cn1 sigma_cn2 height biasf\n"
                                  "#! SET kerneltype stretched-gaussian\n"
                                  + "".join(f"{t} 0.9 0.8 0.05 0.05 5.2631579 20\n"
                                            for t in range(1, 41)))
    rows = [f"{10.0 * k} 0.9 0.8 1.33 0.97 1.85 {min(k, 200) * 0.5} 0.0" for k in range(400)]
    (folder / "COLVAR").write_text("#! FIELDS time cn1 cn2 r_1_2 r_1_3 r_2_3 metad.bias "
                                   "walls.bias\n" + "\n".join(rows) + "\n")
    s = fes_report(folder, tmp_path / "fes")
    assert s["frames"]["product"] == 0 and s["delta_f_product_minus_reactant_kJ_per_mol"] is None
    assert s["delta_f_lower_bound_kJ_per_mol"] == pytest.approx(40 * 5.2631579, rel=0.01)
    assert any("not reached" in n for n in s["notes"])
