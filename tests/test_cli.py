"""The ffpt-ase command line (run in-process through its main())."""

import numpy as np
import pytest

from ffpt_ase.cli.main import main
from ffpt_ase.data import read_frames


def test_sample_info_convert(tmp_path, capsys):
    out = tmp_path / "pt.npz"
    assert main(["sample", "--system", "HO2", "--teacher", "qforce", "--n", "3000",
                 "--sigma", "0.2", "--seed", "0", "-o", str(out), "--plot", "--quiet"]) == 0
    fr = read_frames(out)
    assert len(fr) == 3000 and fr.metadata["teacher"] == "qforce"
    assert out.with_suffix(".png").stat().st_size > 1000
    assert not (tmp_path / "pt.partial.npz").exists()
    assert main(["data", "info", str(out)]) == 0
    assert "frames: 3000" in capsys.readouterr().out
    assert main(["data", "convert", str(out), str(tmp_path / "pt.xyz")]) == 0
    back = read_frames(tmp_path / "pt.xyz")
    np.testing.assert_allclose(back.energy, fr.energy, rtol=1e-9)


def test_errors_exit_nonzero_with_message(tmp_path, capsys):
    assert main(["sample", "--system", "HO3", "--n", "10", "-o", str(tmp_path / "x.npz")]) == 2
    assert "unknown system" in capsys.readouterr().err
    assert main(["data", "info", str(tmp_path / "missing.npz")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_demo_quick_runs_the_whole_pipeline(tmp_path, capsys):
    """`ffpt-ase demo` end to end (shrunk): teachers, pre-training, PySCF labels, fine-tuning,
    metadynamics through ASE + PLUMED, FES."""
    import json
    import pytest
    pytest.importorskip("pyscf", reason="PySCF not installed (extra 'abinitio')")
    pytest.importorskip("plumed", reason="PLUMED kernel (hillclimber) not installed")
    assert main(["demo", "-o", str(tmp_path), "--quick"]) == 0
    for name in ("pretrain_qforce.npz", "ho2_oh_scan_qforce.png", "pretrain/best.pt",
                 "finetune_abinitio.npz", "finetune/best.pt", "metad_rxn09/HILLS",
                 "metad_rxn09/COLVAR", "fes_rxn09/fes.png", "fes_rxn09/fes.dat",
                 "demo_summary.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    scan = np.loadtxt(tmp_path / "ho2_oh_scan_qforce.txt")
    assert scan[0, 1] > 10.0 and scan[-1, 1] < 0  # repulsive wall, bound O2 at 3 A
    summary = json.loads((tmp_path / "demo_summary.json").read_text())
    assert "PySCF" in summary["fine_tuning_labels"] and summary["metad"]["steps"] == 300
    out = capsys.readouterr().out
    assert "B3LYP" in out and "Delta F (product - reactant) at 300 K" in out
    # the HO2 -> H + O2 table: the teacher gives the data set's +218.5 kJ/mol
    table = summary["ho2_to_h_o2_kJ_per_mol"]
    assert table["Q-Force teacher (Table 1)"] == pytest.approx(218.5, abs=0.1)
    assert table["data set (wB97X-V/cc-pVTZ)"] == pytest.approx(218.5, abs=0.1)
    assert set(summary["fes"]["frames"]) == {"reactant", "product", "transition", "unphysical"}
    # fine-tuning labels are on the teacher's energy zero (free atoms at the same level)
    from ffpt_ase.data import read_frames
    ft = read_frames(tmp_path / "finetune_abinitio.npz")
    assert ft.metadata["energy_zero"] == "free atoms at the same level"
    assert np.abs(ft.energy).max() < 50.0  # eV: binding energies, not totals (~ -4000 eV)


def test_train_evaluate_bench_contract(tmp_path, capsys):
    """The command-line names external checks rely on (issue: MLIP)."""
    import json
    data = tmp_path / "pt.npz"
    assert main(["sample", "--system", "HO2", "--n", "200", "-o", str(data), "--quiet"]) == 0
    out = tmp_path / "runs" / "pt"
    assert main(["train", "--stage", "pretrain", "--data", str(data), "-o", str(out),
                 "--epochs", "2", "--features", "8", "--interactions", "1", "--cutoff", "4.0",
                 "--batch-size", "16", "--seed", "1"]) == 0
    for name in ("best.pt", "last.pt", "log.csv"):
        assert (out / name).exists()
    assert (out / "learning_curve.png").stat().st_size > 1000   # drawn by the command
    ft = tmp_path / "runs" / "ft"
    assert main(["train", "--stage", "finetune", "--init", str(out / "best.pt"), "--data",
                 str(data), "-o", str(ft), "--epochs", "1", "--batch-size", "16"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(ft / "best.pt"), str(data), "--json", "--worst", "3",
                 "--plot", str(tmp_path / "parity.png")]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("energy_mae", "energy_rmse", "forces_mae", "forces_rmse", "energy_per_atom_mae"):
        assert res[key] >= 0
    worst = res["worst_frames"]     # worst first, with their share of the squared error
    assert [w["force_rmse"] for w in worst] == sorted((w["force_rmse"] for w in worst),
                                                      reverse=True)
    assert len(worst) == 3 and 0 < sum(w["share_of_force_sse"] for w in worst) < 1
    assert res["force_sse_share_of_worst_1pct"] == pytest.approx(   # 2 of 200 frames
        worst[0]["share_of_force_sse"] + worst[1]["share_of_force_sse"])
    # per-group errors and the worst frames as text, from a frame file with a label
    labelled = read_frames(data)
    labelled.extras["reaction"] = np.where(np.arange(len(labelled)) < 50, "09", "10")
    labelled.save(tmp_path / "labelled.npz")
    assert main(["evaluate", str(ft / "best.pt"), str(tmp_path / "labelled.npz"),
                 "--group-by", "reaction", "--worst", "2"]) == 0
    text = capsys.readouterr().out
    groups = [line.split() for line in text.splitlines() if line.split()[:1] in (["09"], ["10"])]
    assert [g[:2] for g in groups[:2]] == [["09", "50"], ["10", "150"]]
    table = text.split("the 2 frames with the largest force RMSE")[1].splitlines()
    assert "reaction" in table[1] and len(table) == 4
    assert (tmp_path / "parity.png").stat().st_size > 1000
    assert main(["bench", "speed", "--system", "HO2", "--features", "8", "--interactions", "1",
                 "--dtype", "float32", "--threads", "1", "--calls", "5", "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["ms_per_call"] > 0 and res["n_atoms"] == 3
    assert main(["evaluate", str(data), str(data)]) == 2
    assert "could not be read" in capsys.readouterr().err
    # a negative batch size used to print metrics of uninitialised memory with exit 0
    assert main(["evaluate", str(ft / "best.pt"), str(data), "--batch-size", "-1"]) == 2
    assert "batch size must be >= 1" in capsys.readouterr().err


def test_demo_fine_tunes_on_combustion_data(data_dir, tmp_path):
    """`ffpt-ase demo --data DIR` uses the data set's channel-09 frames instead of PySCF."""
    import json
    import pytest
    pytest.importorskip("plumed", reason="PLUMED kernel (hillclimber) not installed")
    assert main(["demo", "-o", str(tmp_path), "--quick",
                 "--data", str(data_dir / "h2combustion")]) == 0
    summary = json.loads((tmp_path / "demo_summary.json").read_text())
    assert "wB97X-V" in summary["fine_tuning_labels"]
    ft = read_frames(tmp_path / "finetune_abinitio.npz")
    assert len(ft) == 460 and set(ft.elements.tolist()) == {1, 8}  # all 60 IRC + 400 AIMD


def test_metad_fes_stability_contract(tmp_path, capsys):
    """`ffpt-ase metad | fes | stability` with the names external checks rely on."""
    import json
    import pytest
    import torch
    pytest.importorskip("plumed", reason="PLUMED kernel (hillclimber) not installed")
    from ffpt_ase.model.potential import Potential
    torch.manual_seed(0)
    ckpt = tmp_path / "m.pt"
    torch.save(Potential([1, 8], n_features=8, n_interactions=1, n_basis=6).checkpoint(
        stage="test"), ckpt)
    run = tmp_path / "rxn09"
    assert main(["metad", "--reaction", "09", "--model", str(ckpt), "--steps", "300",
                 "--seed", "2", "-o", str(run), "--quiet"]) == 0
    for name in ("HILLS", "COLVAR", "trajectory.traj"):
        assert (run / name).stat().st_size > 0, name
    assert main(["fes", str(run), "-o", str(tmp_path / "fes")]) == 0
    assert (tmp_path / "fes" / "fes.dat").stat().st_size > 0
    assert (tmp_path / "fes" / "fes.png").stat().st_size > 1000
    assert main(["fes", str(run / "HILLS"), "-o", str(tmp_path / "fes2")]) == 0
    out = tmp_path / "stab"
    assert main(["stability", "--model", str(ckpt), "--system", "HO2", "--trajectories", "2",
                 "--time-ps", "0.01", "-o", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_trajectories"] == 2
    assert main(["metad", "--reaction", "99", "--model", str(ckpt), "--steps", "10",
                 "-o", str(tmp_path / "x")]) == 2
    assert "unknown reaction channel" in capsys.readouterr().err


def test_fes_and_demo_refuse_bad_input_in_one_line(tmp_path, capsys):
    assert main(["fes", str(tmp_path / "missing"), "-o", str(tmp_path / "f")]) == 2
    assert "no HILLS file at" in capsys.readouterr().err
    assert main(["demo", "-o", str(tmp_path / "d"), "--quick", "--pretrain-minutes", "-1"]) == 2
    err = capsys.readouterr().err
    assert "--pretrain-minutes must be > 0" in err and "Traceback" not in err


def test_start_over_applies_to_the_output_of_a_config_file(tmp_path, capsys):
    """`-o` from --config: --start-over moves that run aside (it used to be ignored and the
    old run resumed); without it the changed run is refused in one line."""
    data = tmp_path / "pt.npz"
    assert main(["sample", "--system", "HO2", "--n", "60", "-o", str(data), "--quiet"]) == 0
    run = tmp_path / "runs" / "pt"
    toml = tmp_path / "train.toml"
    toml.write_text(f'[train]\nstage = "scratch"\ndata = "{data}"\noutput = "{run}"\n'
                    f'epochs = 1\nfeatures = 8\ninteractions = 1\nbasis = 4\n')
    assert main(["train", "--config", str(toml)]) == 0
    capsys.readouterr()
    assert main(["train", "--config", str(toml), "--lr", "0.01"]) == 2
    err = capsys.readouterr().err
    assert "settings.lr: 0.001 -> 0.01" in err and len(err.strip().splitlines()) == 1
    assert main(["train", "--config", str(toml), "--lr", "0.01", "--start-over"]) == 0
    old = tmp_path / "runs" / "pt.old-1"
    assert (old / "best.pt").exists() and (run / "best.pt").exists()
    import json
    assert json.loads((run / "run.json").read_text())["settings"]["lr"] == 0.01
    assert json.loads((old / "run.json").read_text())["settings"]["lr"] == 0.001
