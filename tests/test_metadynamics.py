"""Channels, PLUMED decks and the metadynamics driver (ASE + PLUMED, tiny random model)."""

import json
import re

import numpy as np
import pytest
import torch
from ase import Atoms
from conftest import SimulatedCrash, crash_at_write, interrupt_at_call

from ffpt_ase.forcefields.topology import perceive
from ffpt_ase.applications.h2combustion.channels import channel_ids, get_channel, reactant_complex
from ffpt_ase.applications.h2combustion.decks import BIASFACTOR, deck_name, deck_text
from ffpt_ase.applications.h2combustion.decks import shipped_deck as find_deck
from ffpt_ase.applications.h2combustion.metad import ChannelMetadConfig as MetadConfig
from ffpt_ase.applications.h2combustion.metad import UnphysicalMonitor
from ffpt_ase.applications.h2combustion.metad import run_channel_metadynamics as run_metadynamics
from ffpt_ase.simulate.metad import (PlumedNotAvailable, deck_lines, metad_height_kjmol,
                                     require_plumed, truncate_plumed_file)

REPO_DECKS = __import__("pathlib").Path(__file__).resolve().parents[1] / "plumed_inputs"


def test_channel_table_and_reactant_complexes():
    ids = channel_ids()
    assert len(ids) == 21 and {"06a", "06b", "12a", "12b"} <= set(ids)
    for cid in ids:
        ch = get_channel(cid)
        atoms = reactant_complex(cid)
        assert atoms.get_chemical_symbols() == list(ch.symbols)
        topo = perceive(atoms.numbers, atoms.positions)
        assert sorted(topo.fragment_formulas()) == sorted(s for s, _ in ch.reactants), cid
        bonds = {tuple(b) for b in topo.bonds.tolist()}
        assert bonds == {tuple(sorted(b)) for b in ch.reactant_bonds}, cid
    assert get_channel(9).id == "09" and get_channel("12A").id == "12a"
    with pytest.raises(ValueError, match="unknown reaction channel"):
        get_channel("20")


def test_channel_table_against_data(data_dir):
    """Atom order and CV atoms agree with the data set's geometry files."""
    from ase.io import read
    geo = data_dir / "h2combustion" / "geometries"
    for cid in channel_ids():
        if cid in ("05", "06a", "06b", "07"):
            continue  # placeholder files in the data set
        ch = get_channel(cid)
        for kind in ("reactant", "product"):
            assert read(geo / f"{kind}_{cid}.xyz").get_chemical_symbols() == list(ch.symbols)


def test_shipped_decks_are_current_and_units_are_explicit():
    for cid in channel_ids():
        text = (REPO_DECKS / deck_name(cid)).read_text()
        assert text == deck_text(cid), \
            f"{deck_name(cid)} is stale: python -m ffpt_ase.applications.h2combustion.decks"
        # the package's copy (what the driver runs) is the user-facing one, byte for byte
        assert find_deck(cid).read_text() == text
        assert "UNITS LENGTH=A TIME=fs ENERGY=kj/mol" in text
        assert metad_height_kjmol(text.splitlines()) == pytest.approx(5.0)
        assert "SIGMA=0.05,0.05" in text and "PACE=100" in text and "TEMP=300" in text
        assert "r_1_2: DISTANCE ATOMS=1,2" in text
        assert "UPPER_WALLS" in text and "BIASFACTOR=" in text


def test_height_follows_the_units_line():
    assert metad_height_kjmol(["UNITS ENERGY=eV", "m: METAD ARG=a HEIGHT=5"]) == \
        pytest.approx(482.43, abs=0.01)
    assert metad_height_kjmol(["UNITS ENERGY=kcal/mol", "m: METAD ARG=a HEIGHT=1.195"]) == \
        pytest.approx(5.0, abs=0.001)
    assert metad_height_kjmol(["m: METAD ARG=a HEIGHT=5"]) == 5.0


plumed = pytest.importorskip("plumed", reason="PLUMED kernel (hillclimber) not installed")


class _Zero(__import__("ase.calculators.calculator", fromlist=["Calculator"]).Calculator):
    implemented_properties = ["energy", "forces"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        super().calculate(atoms, properties, system_changes)
        self.results = {"energy": 0.0, "forces": np.zeros((len(self.atoms), 3))}


@pytest.mark.parametrize("cid", channel_ids())
def test_plumed_accepts_every_deck(cid, tmp_path):
    """PLUMED's parser reads each deck, and evaluating it on the channel's reactant complex
    (as the driver does, through ase.calculators.plumed) gives the expected CVs."""
    from ase import units
    from ase.calculators.plumed import Plumed

    from ffpt_ase.applications.h2combustion.decks import collective_variables
    atoms = reactant_complex(cid)
    lines = deck_lines(find_deck(cid), tmp_path)
    with Plumed(_Zero(), lines, 0.2 * units.fs, atoms=atoms, kT=units.kB * 300,
                log=str(tmp_path / "plumed.log")) as calc:
        atoms.calc = calc
        assert np.isfinite(atoms.get_forces()).all()
    fields = (tmp_path / "COLVAR").read_text().splitlines()[0].split()[2:]
    row = np.loadtxt(tmp_path / "COLVAR", comments="#", ndmin=2)[0]
    cv = dict(zip(fields, row))
    expected = collective_variables(cid, atoms.positions)[0]
    assert cv["cn1"] == pytest.approx(expected[0], abs=1e-4)
    assert cv["cn2"] == pytest.approx(expected[1], abs=1e-4)
    assert cv["walls.bias"] == 0.0
    d = atoms.get_all_distances()
    for i in range(len(atoms)):
        for j in range(i + 1, len(atoms)):
            assert cv[f"r_{i + 1}_{j + 1}"] == pytest.approx(d[i, j], abs=1e-4)


def _plumed_cvs(cid, atoms, folder):
    from ase import units
    from ase.calculators.plumed import Plumed
    folder.mkdir()
    lines = deck_lines(find_deck(cid), folder)
    with Plumed(_Zero(), lines, 0.2 * units.fs, atoms=atoms, kT=units.kB * 300,
                log=str(folder / "plumed.log")) as calc:
        atoms.calc = calc
        atoms.get_forces()
    fields = (folder / "COLVAR").read_text().splitlines()[0].split()[2:]
    row = np.loadtxt(folder / "COLVAR", comments="#", ndmin=2)[0]
    return dict(zip(fields, row))


def test_every_deck_separates_the_data_sets_reactant_and_product(data_dir, tmp_path):
    """PLUMED evaluates both CVs of every deck on the data set's reactant_NN.xyz and
    product_NN.xyz: each CV moves by at least 0.4 (channel 08's CV2 is the data set's own
    spectator O-H bond and is exempt)."""
    from ase.io import read
    geo = data_dir / "h2combustion" / "geometries"
    moved = {}
    for cid in channel_ids():
        a, b = (read(geo / f"{k}_{cid}.xyz") for k in ("reactant", "product"))
        if cid in ("05", "06a", "06b", "07"):  # placeholder scan files: bond vs 3-4 A apart
            a = reactant_complex(cid)
            b = a.copy()
            b.positions[1] = b.positions[0] + (b.positions[1] - b.positions[0]) * 3.0
        cv_a = _plumed_cvs(cid, a, tmp_path / f"{cid}a")
        cv_b = _plumed_cvs(cid, b, tmp_path / f"{cid}b")
        moved[cid] = (abs(cv_a["cn1"] - cv_b["cn1"]), abs(cv_a["cn2"] - cv_b["cn2"]))
    for cid, (d1, d2) in moved.items():
        assert d1 >= 0.4, (cid, "cn1", d1)
        if cid != "08":
            assert d2 >= 0.4, (cid, "cn2", d2)
    assert moved["08"][1] < 0.1  # the spectator bond really is one


def _rows(path):
    return [line for line in path.read_text().splitlines() if not line.startswith("#")]


def test_metad_run_restart_and_interrupt(tiny_model, tmp_path, monkeypatch):
    out = tmp_path / "rxn09"
    cfg = MetadConfig(reaction="09", model=tiny_model, steps=400, seed=1, output=str(out),
                      traj_interval=100)
    s = run_metadynamics(cfg, show_progress=False)
    for name in ("HILLS", "COLVAR", "trajectory.traj", "summary.json", "state.json"):
        assert (out / name).exists(), name
    assert s["steps"] == 400 and s["ns_per_day"] > 0 and s["hill_height_kJ_per_mol"] == 5.0
    hills = np.loadtxt(out / "HILLS", comments="#")
    # HEIGHT 5 kJ/mol, stored by PLUMED times gamma/(gamma-1) with the decks' gamma (40);
    # later hills are tempered down by the bias already deposited
    gamma = float(re.search(r"BIASFACTOR=(\S+)", (out / "plumed.dat").read_text()).group(1))
    assert gamma == BIASFACTOR == 40.0
    assert hills[0, 5] == pytest.approx(5.0 * gamma / (gamma - 1))
    assert np.all(hills[:, 5] <= 5.0 * gamma / (gamma - 1) + 1e-9)
    assert len(_rows(out / "COLVAR")) >= 40

    # continue to 600 steps: nothing is repeated, times keep increasing
    cfg.steps = 600
    run_metadynamics(cfg, show_progress=False)
    t = np.loadtxt(out / "COLVAR", comments="#")[:, 0]
    assert np.all(np.diff(t) > 0) and t[-1] == pytest.approx(600 * 0.2)
    h = np.loadtxt(out / "HILLS", comments="#")[:, 0]
    assert np.all(np.diff(h) > 0) and len(h) == 6

    # an interrupted run (Ctrl-C inside a force call) resumes from its last checkpoint
    from ffpt_ase import FFPTCalculator
    interrupt_at_call(monkeypatch, FFPTCalculator, "calculate", 250)
    cfg.steps = 1000
    with pytest.raises(KeyboardInterrupt):
        run_metadynamics(cfg, show_progress=False)
    state = json.loads((out / "state.json").read_text())
    assert state["steps_done"] == 800  # last checkpoint before the interrupt (at ~849)
    monkeypatch.undo()
    s = run_metadynamics(cfg, show_progress=False)
    assert s["steps"] == 1000
    t = np.loadtxt(out / "COLVAR", comments="#")[:, 0]
    assert np.all(np.diff(t) > 0) and t[-1] == pytest.approx(200.0)
    h = np.loadtxt(out / "HILLS", comments="#")[:, 0]
    assert np.all(np.diff(h) > 0) and len(h) == 10


def test_metad_temperature_follows_the_run(tmp_path):
    from ffpt_ase.simulate.metad import set_metad_temperature
    lines = deck_lines(find_deck("09"), tmp_path)
    hot = set_metad_temperature(lines, 500.0)
    (metad,) = [line for line in hot if "METAD" in line.split()]
    assert "TEMP=500" in metad and "TEMP=300" not in metad
    assert set_metad_temperature(["m: METAD ARG=a HEIGHT=5"], 300.0)[0].endswith("TEMP=300")


def test_truncate_plumed_file(tmp_path):
    f = tmp_path / "HILLS"
    f.write_text("#! FIELDS time x\n10 1\n20 2\n30 3\n")
    assert truncate_plumed_file(f, 20.0, keep_at_cut=True) == 1
    assert f.read_text() == "#! FIELDS time x\n10 1\n20 2\n"
    assert truncate_plumed_file(f, 20.0) == 1
    assert f.read_text() == "#! FIELDS time x\n10 1\n"


def test_unphysical_monitor_channel_09(tmp_path):
    ch = get_channel("09")
    mon = UnphysicalMonitor(ch)
    ho2 = reactant_complex("09")
    assert mon.check(ho2, 0) == []
    h_o2 = ho2.copy()  # H leaves: products H + O2 are fine
    o1, o2, h = 0, 1, 2
    h_o2.positions[h] += 3 * (h_o2.positions[h] - h_o2.positions[o1])
    h_o2.positions[o2] = h_o2.positions[o1] + [0, 0, 1.21]
    assert mon.check(h_o2, 10) == []
    split = ho2.copy()  # O2 split: O + OH is not a channel 09 species
    split.positions[o2] = split.positions[o1] + [3.0, 0, 0]
    split.positions[h] = split.positions[o1] + [0, 0.97, 0]
    events = mon.check(split, 20)
    assert events[0]["type"] == "unphysical_species" and "O" in events[0]["not_allowed"]
    crash = ho2.copy()
    crash.positions[h] = crash.positions[o2] + [0.2, 0, 0]
    assert any(e["type"] == "atoms_too_close" for e in mon.check(crash, 30))
    assert mon.fraction_flagged == pytest.approx(0.5)
    assert events[0]["step"] == 20


def test_unphysical_species_counts_flagged_frames_by_what_they_held():
    from ffpt_ase.applications.h2combustion.metad import TOO_CLOSE, unphysical_species
    ch = get_channel("09")
    mon = UnphysicalMonitor(ch)
    ho2 = reactant_complex("09")
    split = ho2.copy()   # O + OH: not a channel-09 species
    split.positions[1] = split.positions[0] + [3.0, 0, 0]
    split.positions[2] = split.positions[0] + [0, 0.97, 0]
    crash = ho2.copy()   # H into an O: HO2 is allowed, the contact is not
    crash.positions[2] = crash.positions[1] + [0.2, 0, 0]
    squeezed = split.copy()   # O + OH with the H pushed into its O
    squeezed.positions[2] = squeezed.positions[0] + [0, 0.25, 0]
    events = []
    for walker, frames in enumerate([[ho2, split, split, crash], [squeezed, ho2]]):
        for step, atoms in enumerate(frames):
            events += [{**e, "walker": walker} for e in mon.check(atoms, step * 10)]
    counts = unphysical_species(events, walkers=3)
    assert counts == [{"HO + O": 2, TOO_CLOSE: 1}, {f"HO + O ({TOO_CLOSE})": 1}, {}]
    assert list(counts[0]) == ["HO + O", TOO_CLOSE]          # most frequent first
    assert sum(map(sum, (c.values() for c in counts))) == mon.flagged
    # a single-walker run's events carry no walker index
    assert unphysical_species([{k: v for k, v in e.items() if k != "walker"}
                               for e in events[:1]]) == [{"HO + O": 1}]


def test_missing_plumed_kernel_is_explained(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_plumed(name, *a, **k):
        if name == "plumed":
            raise ImportError("No module named 'plumed'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_plumed)
    with pytest.raises(PlumedNotAvailable, match="hillclimber"):
        require_plumed()


def test_start_structure_must_match_channel(tiny_model, tmp_path):
    from ase.io import write
    write(tmp_path / "wrong.xyz", Atoms("OHO", positions=[[0, 0, 0], [0, 0, 1], [0, 0, 2.3]]))
    with pytest.raises(ValueError, match="needs"):
        run_metadynamics(MetadConfig(reaction="09", model=tiny_model, steps=10,
                                     output=str(tmp_path / "x"), start=str(tmp_path / "wrong.xyz")),
                         show_progress=False)


class _Collapse(_Zero):
    """Pulls all atoms together: unphysical geometries within a few hundred steps."""

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        super().calculate(atoms, properties, system_changes)
        x = self.atoms.positions - self.atoms.positions.mean(0)
        self.results = {"energy": float(20.0 * (x ** 2).sum()), "forces": -40.0 * x}


def test_stop_on_unphysical(tmp_path):
    cfg = MetadConfig(reaction="09", steps=5000, output=str(tmp_path / "stop"),
                      stop_on_event=True)
    s = run_metadynamics(cfg, calc=_Collapse(), show_progress=False)
    assert s["stopped_on"] is not None and s["steps"] < 5000
    assert (tmp_path / "stop" / "events.jsonl").read_text().strip()
    state = json.loads((tmp_path / "stop" / "state.json").read_text())
    assert state["steps_done"] == s["steps"]


def test_start_over_moves_the_old_run_aside(tmp_path):
    """A fresh start is asked for and moves the old run aside: its event counts are not
    inherited, and nothing of the old run is lost."""
    cfg = MetadConfig(reaction="09", steps=5000, output=str(tmp_path / "s"),
                      stop_on_event=True)
    first = run_metadynamics(cfg, calc=_Collapse(), show_progress=False)
    again = run_metadynamics(cfg, calc=_Collapse(), show_progress=False)
    assert again == first  # a stopped run is complete: rerunning it changes nothing
    second = run_metadynamics(cfg, calc=_Collapse(), show_progress=False, start_over=True)
    assert second["checked_frames"] == first["checked_frames"] > 0
    assert second["unphysical_fraction"] == first["unphysical_fraction"]
    old = tmp_path / "s.old-1"
    assert json.loads((old / "summary.json").read_text()) == first
    assert (old / "HILLS").exists() and (old / "events.jsonl").read_text().strip()


def metad_result(folder):
    from ase.io import read
    traj = read(folder / "trajectory.traj", index=":")
    return {"hills": np.loadtxt(folder / "HILLS", comments="#"),
            "colvar": np.loadtxt(folder / "COLVAR", comments="#"),
            "frames": np.array([a.positions for a in traj]),
            "momenta": np.array([a.get_momenta() for a in traj]),
            "events": (folder / "events.jsonl").read_text() if (folder / "events.jsonl").exists()
            else "",
            "summary": {k: v for k, v in json.loads((folder / "summary.json").read_text()).items()
                        if k not in ("wall_s_this_run", "ns_per_day", "output", "files",
                                      "walker_folders")}}


def assert_same_metad(a, b):
    for key in ("hills", "colvar", "frames", "momenta"):
        assert a[key].shape == b[key].shape, key
        np.testing.assert_allclose(a[key], b[key], rtol=0, atol=1e-7, err_msg=key)
    assert a["events"] == b["events"]
    sa, sb = _flat(a["summary"]), _flat(b["summary"])
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k] == pytest.approx(sb[k], abs=1e-7), k


def _flat(tree, prefix=""):
    """A summary's nested dicts (and lists of dicts) as one dict of leaves keyed by path."""
    out = {}
    for k, v in (tree.items() if isinstance(tree, dict) else enumerate(tree)):
        if isinstance(v, dict) or (isinstance(v, list) and any(isinstance(x, dict) for x in v)):
            out.update(_flat(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


@pytest.mark.parametrize("model", ["network", "collapsing"])
def test_a_metad_run_killed_at_any_write_point_resumes_to_the_same_result(
        model, tiny_model, tmp_path, monkeypatch):
    """Fault injection: crash after each write of the run folder (run.json, plumed.dat, each
    trajectory frame, state.json, event, summary), rerun, and compare with the run that was
    never interrupted: HILLS, COLVAR, trajectory, events and summary agree. The collapsing
    potential makes an event at every check, so events of a discarded segment would show."""
    calc = (lambda: None) if model == "network" else _Collapse
    steps = 240 if model == "network" else 120

    def run(out):
        cfg = MetadConfig(reaction="09", model=tiny_model, steps=steps, seed=3,
                          output=str(out), traj_interval=60, check_interval=20)
        return run_metadynamics(cfg, calc=calc(), show_progress=False)
    run(tmp_path / "ref")
    ref = metad_result(tmp_path / "ref")
    seen = crash_at_write(monkeypatch, 0)
    run(tmp_path / "count")
    n_points = len(seen)
    assert n_points >= 12 and {"state.json", "trajectory.traj", "summary.json"} <= set(seen)
    if model == "collapsing":
        assert seen.count("events.jsonl") >= 4 and ref["events"]
    for k in range(1, n_points + 1):
        out = tmp_path / f"crash{k}"
        crash_at_write(monkeypatch, k)
        with pytest.raises(SimulatedCrash):
            run(out)
        monkeypatch.undo()
        run(out)
        try:
            assert_same_metad(metad_result(out), ref)
        except AssertionError as err:
            raise AssertionError(f"crash after write {k} ({seen[k - 1]}): {err}") from None


def test_temperature_monitor_reports_window_means_and_overheating(caplog):
    from ffpt_ase.simulate.observers import TemperatureMonitor
    atoms = reactant_complex("09")
    mon = TemperatureMonitor(300.0, window_ps=1.0)
    rng = np.random.default_rng(0)
    # 0.1 ps apart: 2 windows, the second one's mean 900 K from samples of 600 and 1200 K
    for k, target in enumerate([300.0] * 10 + [600.0, 1200.0] * 5):
        p = rng.normal(size=(3, 3))
        atoms.set_momenta(p)
        atoms.set_momenta(p * np.sqrt(target / atoms.get_temperature()))
        mon.add(atoms, 0.1 * k)
        if k == 14:   # a restart in the middle of the second window loses nothing
            state = json.loads(json.dumps(mon.state_dict()))
            mon = TemperatureMonitor(300.0, window_ps=1.0)
            mon.load_state_dict(state)
    # a last check at the start of a new window is one sample, not a 1-ps mean
    p = rng.normal(size=(3, 3))
    atoms.set_momenta(p * np.sqrt(5000.0 / Atoms("O2H", momenta=p).get_temperature()))
    mon.add(atoms, 2.0)
    s = mon.summary()
    assert s["temperature_window_means_K"] == pytest.approx([300.0, 900.0], abs=0.1)
    assert s["overheated"] and s["temperature_max_window_mean_K"] == pytest.approx(900.0, abs=0.1)
    assert any("raise --friction" in r.getMessage() for r in caplog.records)


def test_basins_are_chemistry_with_a_breaking_zone():
    """Channel 09: HO2 and its H-shifted isomer are reactant; H + O2 is product only once
    the H is 3 A (APART_A) from both O; nearer it still binds (transition); O + OH is
    unphysical."""
    ch = get_channel("09")

    def d(oo, o1h, o2h):
        m = np.zeros((3, 3))
        m[0, 1] = m[1, 0] = oo
        m[0, 2] = m[2, 0] = o1h
        m[1, 2] = m[2, 1] = o2h
        return m

    frames = [d(1.33, 0.97, 1.85), d(1.33, 1.85, 0.97), d(1.21, 3.05, 3.9),
              d(1.21, 1.35, 2.3), d(3.0, 0.97, 3.3), d(1.21, 0.3, 1.3),
              # O-O stretched to 1.8 A: beyond 1.25 x 1.32 A (O + OH) but within 1.6 x
              # (HO2): a breaking bond, not O + OH; at 2.2 A it is O + OH
              d(1.8, 0.97, 2.3), d(2.2, 0.97, 2.6)]
    assert ch.classify(np.array(frames)).tolist() == [
        "reactant", "reactant", "product", "transition", "unphysical", "unphysical",
        "transition", "unphysical"]
    # H + O2 with the H 2.0 A from the nearer O: no bond (beyond 1.25 x), but not apart
    assert ch.classify(np.array([d(1.21, 2.0, 2.9), d(1.21, 2.95, 3.8)])).tolist() == [
        "transition", "transition"]


def test_a_stretched_bond_is_no_foreign_species():
    """Channel 04 (H2O + O -> 2 OH; atoms H1 O1 H2 O2): an H2O whose O1-H2 is stretched to
    1.24 A, the O 2.7 A away, is still H2O + O with a breaking bond (transition); with the
    H 1.7 A from every O it is H + OH + O, a species channel 04 does not have."""
    ch = get_channel("04")

    def distances(o1h2):
        o1 = np.array([0.97, 0.0, 0.0])
        pos = np.array([[0.0, 0.0, 0.0], o1, o1 + o1h2 * np.array([0.25, 0.968, 0.0]),
                        o1 + [2.7, 0.0, 0.0]])          # H1-O1-H2 104.5 deg
        return np.linalg.norm(pos[:, None] - pos[None], axis=-1)

    stretched, broken = distances(1.24), distances(1.7)
    assert stretched[1, 2] == pytest.approx(1.24, abs=1e-3) and broken[1, 2] > 1.6 * 0.97
    assert ch.classify(np.array([stretched, broken])).tolist() == ["transition", "unphysical"]


WATER_DECK = """# a user's own system: one water molecule, its O-H1 distance biased
UNITS LENGTH=A TIME=fs ENERGY=kj/mol
d: DISTANCE ATOMS=1,2
metad: METAD ARG=d SIGMA=0.05 HEIGHT=2 PACE=20 TEMP=300 BIASFACTOR=10 FILE=HILLS
PRINT ARG=d,metad.bias STRIDE=10 FILE=COLVAR
"""


def test_metad_runs_any_system_from_a_deck_and_a_start_file(tiny_model, tmp_path, capsys):
    """`ffpt-ase metad --deck --start` on a system that is no combustion channel (a water
    molecule, periodic box kept), then `ffpt-ase fes` on it: the FES without basins."""
    from ase.io import write

    from ffpt_ase.cli.main import main
    water = Atoms("OHH", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]],
                  cell=[12.0, 12.0, 12.0], pbc=True)
    write(tmp_path / "water.xyz", water)
    (tmp_path / "water.dat").write_text(WATER_DECK)
    out = tmp_path / "run"
    assert main(["metad", "--deck", str(tmp_path / "water.dat"), "--start",
                 str(tmp_path / "water.xyz"), "--model", str(tiny_model), "--steps", "200",
                 "--timestep", "0.5", "--friction", "10", "-o", str(out), "--quiet"]) == 0
    assert "water.xyz with" in capsys.readouterr().out
    s = json.loads((out / "summary.json").read_text())
    assert s["steps"] == 200 and "unphysical_fraction" not in s and "reaction" not in s
    assert len(_rows(out / "HILLS")) == 10          # PACE=20 over 200 steps
    from ase.io import read
    last = read(out / "trajectory.traj", index=-1)
    assert last.pbc.all() and last.cell[0, 0] == pytest.approx(12.0)
    state = json.loads((out / "state.json").read_text())
    assert state["config"]["deck"] == str(tmp_path / "water.dat") and state["record"] == {}
    # continuing the run keeps the cell (resumed from the trajectory)
    assert main(["metad", "--deck", str(tmp_path / "water.dat"), "--start",
                 str(tmp_path / "water.xyz"), "--model", str(tiny_model), "--steps", "300",
                 "--timestep", "0.5", "--friction", "10", "-o", str(out), "--quiet"]) == 0
    assert len(_rows(out / "HILLS")) == 15
    capsys.readouterr()
    assert main(["fes", str(out), "-o", str(tmp_path / "fes")]) == 0
    printed = capsys.readouterr().out
    assert "from 15 hills (no basins)" in printed
    assert (tmp_path / "fes" / "fes_d.dat").exists()


def test_metad_without_a_system_says_what_to_give(tiny_model, tmp_path, capsys):
    from ffpt_ase.cli.main import main
    assert main(["metad", "--model", str(tiny_model), "--steps", "10", "-o",
                 str(tmp_path / "x")]) == 2
    assert "--reaction NN" in capsys.readouterr().err


def test_deck_without_units_is_refused_before_anything_runs(tiny_model, tmp_path):
    """A deck without UNITS would be read in nm and ps: refused, no run folder made."""
    from ffpt_ase.simulate.metad import MetadConfig as GenericConfig
    from ffpt_ase.simulate.metad import run_metadynamics as run_generic
    (tmp_path / "nm.dat").write_text("d: DISTANCE ATOMS=1,2\nPRINT ARG=d FILE=COLVAR\n")
    water = Atoms("OHH", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    with pytest.raises(ValueError, match="declares no UNITS"):
        run_generic(GenericConfig(deck=str(tmp_path / "nm.dat"), model=str(tiny_model),
                                  steps=5, output=str(tmp_path / "nm")), atoms=water,
                    show_progress=False)
    assert not (tmp_path / "nm").exists()



def test_metad_killed_by_the_os_resumes_to_the_same_result(tiny_model, tmp_path):
    """`kill -9` of a running `ffpt-ase metad` (no handler runs, PLUMED's buffers are lost):
    the rerun continues from the last checkpoint to the uninterrupted run's result."""
    import os
    import signal
    import subprocess
    import sys
    import time

    def argv(out):
        return ["metad", "--reaction", "09", "--model", str(tiny_model), "--steps", "1500",
                "--seed", "4", "--traj-interval", "100", "-o", str(out), "--quiet"]
    from ffpt_ase.cli.main import main
    assert main(argv(tmp_path / "ref")) == 0
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "ffpt_ase.cli.main", *argv(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    state = out / "state.json"
    deadline = time.time() + 120
    while time.time() < deadline:
        if state.exists() and json.loads(state.read_text())["steps_done"] >= 300:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = json.loads(state.read_text())["steps_done"]
    assert 300 <= done < 1500, done
    assert main(argv(out)) == 0
    assert_same_metad(metad_result(out), metad_result(tmp_path / "ref"))


def test_metad_refuses_a_busy_folder_and_changed_settings(tiny_model, tmp_path):
    from ffpt_ase.runfolder import RunFolderError
    out = tmp_path / "run"
    base = dict(reaction="09", model=tiny_model, steps=100, seed=1, output=str(out))
    run_metadynamics(MetadConfig(**base), show_progress=False)
    import fcntl
    import os
    fd = os.open(out / ".lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(RunFolderError, match="in use by another process"):
            run_metadynamics(MetadConfig(**{**base, "steps": 200}), show_progress=False)
    finally:
        os.close(fd)
    for change, message in ((dict(temperature_K=500.0), "temperature_K: 300.0 -> 500.0"),
                            (dict(timestep_fs=0.5), "timestep_fs: 0.2 -> 0.5"),
                            (dict(reaction="10"), "reaction: '09' -> '10'"),
                            (dict(seed=2), "seed: 1 -> 2")):
        with pytest.raises(RunFolderError, match=re.escape(message)):
            run_metadynamics(MetadConfig(**{**base, **change}), show_progress=False)
    other = tmp_path / "other.pt"
    from ffpt_ase.model.potential import Potential
    torch.manual_seed(1)
    torch.save(Potential([1, 8], n_features=8, n_interactions=1, n_basis=6).checkpoint(
        stage="test"), other)
    with pytest.raises(RunFolderError, match=r"inputs\.model \(content changed"):
        run_metadynamics(MetadConfig(**{**base, "model": other}), show_progress=False)
    # more steps is a continuation, not a change
    assert run_metadynamics(MetadConfig(**{**base, "steps": 200}),
                            show_progress=False)["steps"] == 200
    # rerunning a finished run changes no file (it used to drop the last COLVAR row)
    files = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    run_metadynamics(MetadConfig(**{**base, "steps": 200}), show_progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == files
