"""Bad inputs and faults, tried as a careful user and as an attacker would, through the
command line (``main``). Every case must end with exactly one line on stderr that names
what is wrong, a non-zero exit code and no traceback; no case may run code from a file,
lose or change data of an existing run, or print a result.

``python tests/test_bad_inputs.py`` prints the table of cases (the issue's closing note).
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest


@dataclass
class Case:
    area: str
    what: str                       # the bad input or fault, in words
    argv: Callable                  # env -> argv list
    expect: str                     # text the one error line must contain
    code: int = 2
    setup: Callable | None = None   # (env, tmp_path, monkeypatch) -> None
    check: Callable | None = None   # (env, tmp_path) -> None, after the command
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------- environment
class _Payload:
    """Pickles to a call that creates a file when unpickled without weights_only."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Files every case may use: a tiny model, data (good and broken), decks, structures,
    finished runs of train, metad and stability, a folder of someone's own files."""
    import torch
    from ase import Atoms
    from ase.io import write

    from ffpt_ase.applications.systems import sample_system
    from ffpt_ase.cli.main import main
    from ffpt_ase.data.frames import Frames
    from ffpt_ase.model.potential import Potential

    d = tmp_path_factory.mktemp("env")
    e = {"dir": d, "marker": d / "PWNED"}
    torch.manual_seed(0)
    e["model"] = d / "model.pt"
    torch.save(Potential([1, 8], n_features=8, n_interactions=1, n_basis=6).checkpoint(
        stage="test"), e["model"])
    torch.manual_seed(1)
    e["model2"] = d / "model2.pt"
    torch.save(Potential([1, 8], n_features=8, n_interactions=1, n_basis=6).checkpoint(
        stage="test"), e["model2"])
    e["evil"] = d / "evil.pt"
    torch.save({"format": _Payload(e["marker"])}, e["evil"])
    frames = sample_system("HO2", 60, sigma=0.1, seed=0, show_progress=False)
    e["data"] = d / "ho2.npz"
    frames.save(e["data"])
    e["data2"] = d / "ho2_other.npz"
    sample_system("HO2", 60, sigma=0.1, seed=1, show_progress=False).save(e["data2"])
    nan = frames[np.arange(10)]
    nan.positions = nan.positions.copy()
    nan.positions[3, 1, 0] = np.nan
    e["nan_data"] = d / "nan.npz"
    Frames(positions=nan.positions, numbers=nan.numbers, energy=nan.energy,
           forces=nan.forces).save(e["nan_data"])
    e["nolabels"] = d / "nolabels.npz"
    Frames(positions=frames.positions[:5], numbers=frames.numbers).save(e["nolabels"])
    e["carbon"] = d / "co.npz"
    Frames(positions=frames.positions[:5, :2], numbers=np.array([6, 8]),
           energy=np.zeros(5), forces=np.zeros((5, 2, 3))).save(e["carbon"])
    raw = e["data"].read_bytes()
    e["truncated"] = d / "truncated.npz"
    e["truncated"].write_bytes(raw[: len(raw) // 2])
    e["garbage"] = d / "garbage.npz"
    e["garbage"].write_bytes(b"\x00not an archive" * 50)
    corrupt = bytearray(raw)
    mid = len(corrupt) // 3
    corrupt[mid:mid + 64] = b"\xff" * 64
    e["corrupt"] = d / "corrupt.npz"
    e["corrupt"].write_bytes(bytes(corrupt))
    e["wrong_keys"] = d / "wrong.npz"
    np.savez(e["wrong_keys"], a=np.zeros(3))
    text_files = {  # key: (file name, content)
        "csv": ("frames.csv", "1,2,3\n"),
        "empty_xyz": ("empty.xyz", ""),
        "a_file": ("a_file.txt", "not a folder"),
        "nan_xyz": ("nan.xyz", "3\n\nO 0 0 0\nH nan 0 0\nH -0.24 0.93 0\n"),
        "deck": ("water.dat", "UNITS LENGTH=A TIME=fs ENERGY=kj/mol\nd: DISTANCE ATOMS=1,2\n"
                 "metad: METAD ARG=d SIGMA=0.05 HEIGHT=2 PACE=20 BIASFACTOR=10 FILE=HILLS\n"
                 "PRINT ARG=d STRIDE=10 FILE=COLVAR\n"),
        "nounits": ("nounits.dat", "d: DISTANCE ATOMS=1,2\nPRINT ARG=d FILE=COLVAR\n"),
        "walkers_deck": ("walkers.dat", "UNITS LENGTH=A\nd: DISTANCE ATOMS=1,2\n"
                         "METAD ARG=d SIGMA=0.05 HEIGHT=2 PACE=20 FILE=HILLS WALKERS_N=2 "
                         "WALKERS_ID=0 WALKERS_DIR=/tmp\n"),
        "bad_units": ("bad_units.dat", "UNITS LENGTH=A TIME=fortnight\n"
                      "d: DISTANCE ATOMS=1,2\nPRINT ARG=d FILE=COLVAR\n"),
        "bad_toml": ("bad.toml", "[train\nepochs = 2\n"),
        "unknown_toml": ("unknown.toml", "[train]\nepochz = 2\n"),
        "bad_json": ("bad.json", "{not json"),
    }
    for key, (name, text) in text_files.items():
        e[key] = d / name
        e[key].write_text(text)
    structures = {
        "cl": ("cl.xyz", Atoms("Cl", positions=[[0, 0, 0]])),
        "fe": ("fe.xyz", Atoms("Fe", positions=[[0, 0, 0]])),
        "water": ("water.xyz", Atoms("OHH", positions=[[0, 0, 0], [0.96, 0, 0],
                                                       [-0.24, 0.93, 0]])),
        "wrong_atoms": ("wrong_atoms.xyz", Atoms("OHO", positions=[[0, 0, 0], [0, 0, 1],
                                                                   [0, 0, 2.3]])),
    }
    for key, (name, atoms) in structures.items():
        e[key] = d / name
        write(e[key], atoms)
    e["deepmd"] = d / "deepmd"
    (e["deepmd"] / "set.000").mkdir(parents=True)
    e["notes"] = d / "notes"
    e["notes"].mkdir()
    (e["notes"] / "thesis.tex").write_text("precious")
    # finished runs whose data must survive every case
    runs = d / "runs"
    e["runs"] = runs
    assert main(["train", "--stage", "scratch", "--data", str(e["data"]), "-o",
                 str(runs / "train"), "--epochs", "2", "--features", "8", "--interactions", "1",
                 "--basis", "4", "--batch-size", "16"]) == 0
    assert main(["metad", "--reaction", "09", "--model", str(e["model"]), "--steps", "60",
                 "--traj-interval", "20", "-o", str(runs / "metad"), "--quiet"]) == 0
    assert main(["stability", "--model", str(e["model"]), "--system", str(e["water"]),
                 "--trajectories", "2", "--time-ps", "0.005", "-o", str(runs / "stab"),
                 "--quiet"]) == 0
    return e


def tree_digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


def copy_run(env, tmp_path, name) -> Path:
    target = tmp_path / name
    shutil.copytree(env["runs"] / name, target)
    return target


# ---------------------------------------------------------------------------- the cases
TINY = ["--features", "8", "--interactions", "1", "--basis", "4", "--batch-size", "16"]


def train_argv(data="data", data_path=None, out=None, extra=()):
    def argv(e):
        o = out(e) if out else e["tmp"] / "t_new"
        d = data_path or str(e[data])
        return ["train", "--stage", "scratch", "--data", d, "-o", str(o), "--epochs", "1",
                *TINY, *extra]
    return argv


def metad_argv(*extra, out=None, model="model"):
    def argv(e):
        o = out(e) if out else e["tmp"] / "m_new"
        return ["metad", "--reaction", "09", "--model", str(e[model]), "--steps", "60",
                "--traj-interval", "20", "-o", str(o), "--quiet", *extra]
    return argv


def deck_argv(deck, start="water", *extra):
    def argv(e):
        return ["metad", "--deck", str(e[deck]), "--start", str(e[start]), "--model",
                str(e["model"]), "--steps", "20", "-o", str(e["tmp"] / "d_new"), "--quiet",
                *extra]
    return argv


def stab_argv(*extra, system=None, out=None, model="model"):
    def argv(e):
        o = out(e) if out else e["tmp"] / "s_new"
        sys_arg = system(e) if callable(system) else (system or str(e["water"]))
        return ["stability", "--model", str(e[model]), "--system", sys_arg,
                "--trajectories", "2", "--time-ps", "0.005", "-o", str(o), "--quiet", *extra]
    return argv


def fixed(*args):
    return lambda e: [a(e) if callable(a) else a for a in args]


def P(key, suffix=""):
    return lambda e: str(e[key]) + suffix


def planted_last_pt(env, tmp_path, monkeypatch):
    run = copy_run(env, tmp_path, "train")
    shutil.copyfile(env["evil"], run / "last.pt")


def disk_full_at_last_pt(env, tmp_path, monkeypatch):
    import errno

    import torch
    copy_run(env, tmp_path, "train")
    real = torch.save

    def save(obj, f, *a, **k):
        if str(f).endswith("last.pt.tmp"):
            raise OSError(errno.ENOSPC, "No space left on device", str(f))
        return real(obj, f, *a, **k)
    monkeypatch.setattr(torch, "save", save)


def ctrl_c_in_training(env, tmp_path, monkeypatch):
    from ffpt_ase.training.trainer import Trainer

    def interrupted(self, epoch):
        raise KeyboardInterrupt
    monkeypatch.setattr(Trainer, "_train_epoch", interrupted)


def ctrl_c_in_metad(env, tmp_path, monkeypatch):
    from conftest import interrupt_at_call
    from ffpt_ase import FFPTCalculator
    interrupt_at_call(monkeypatch, FFPTCalculator, "calculate", 30)


def lock_folder(name):
    def setup(env, tmp_path, monkeypatch):
        import fcntl
        import os
        run = copy_run(env, tmp_path, name)
        fd = os.open(run / ".lock", os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        HELD.append(fd)  # another process' lock; released after the case
    return setup


HELD: list = []


def damage(name, file, content=b"{torn"):
    def setup(env, tmp_path, monkeypatch):
        run = copy_run(env, tmp_path, name)
        (run / file).write_bytes(content)
    return setup


def remove(name, file):
    def setup(env, tmp_path, monkeypatch):
        (copy_run(env, tmp_path, name) / file).unlink()
    return setup


def copied(name):
    return lambda env, tmp_path, monkeypatch: copy_run(env, tmp_path, name)


def in_tmp(name):
    return lambda e: e["tmp"] / name


def partial_sample(env, tmp_path, monkeypatch):
    from ffpt_ase.cli.main import main
    from ffpt_ase.data.frames import Frames
    out = tmp_path / "pt.npz"
    assert main(["sample", "--system", "HO2", "--n", "20", "--seed", "1", "-o", str(out),
                 "--quiet"]) == 0
    out.rename(tmp_path / "pt.partial.npz")
    fr = Frames.load(tmp_path / "pt.partial.npz")
    fr.metadata["checkpoint_next_block"] = 1
    fr.save(tmp_path / "pt.partial.npz")


def notes_untouched(env, tmp_path):
    assert sorted(p.name for p in env["notes"].iterdir()) == ["thesis.tex"]


def unchanged_copy(name):
    def check(env, tmp_path):
        a, b = tree_digest(env["runs"] / name), tree_digest(tmp_path / name)
        assert a == b, sorted(k for k in a if a.get(k) != b.get(k))
    return check


def no_output(path_fn):
    def check(env, tmp_path):
        assert not Path(path_fn({**env, "tmp": tmp_path})).exists()
    return check


CASES = [
    # ---------------------------------------------------------------- usage
    Case("usage", "unknown command", fixed("trian"), "invalid choice"),
    Case("usage", "no command", fixed(), "required: command"),
    Case("usage", "missing required -o", fixed("sample", "--system", "HO2"), "-o/--output"),
    Case("usage", "integer option given text", fixed("sample", "--system", "HO2", "--n", "abc",
                                                      "-o", "x.npz"), "invalid int value"),
    Case("usage", "float option given text", fixed("stability", "--model", "m.pt", "--system",
                                                   "HO2", "-o", "x", "--time-ps", "ten"),
         "invalid float value"),
    Case("usage", "choice out of range (dtype)", fixed("evaluate", "m", "d", "--dtype",
                                                       "float16"), "invalid choice"),
    Case("usage", "unknown option", fixed("train", "--epoch", "3"), "unrecognized arguments"),
    # ---------------------------------------------------------------- sample
    Case("sample", "unknown system", fixed("sample", "--system", "HO3", "-o", "x.npz"),
         "unknown system"),
    Case("sample", "--n 0", fixed("sample", "--system", "HO2", "--n", "0", "-o", "x.npz"),
         "must be >= 1"),
    Case("sample", "--n negative", fixed("sample", "--system", "HO2", "--n", "-5", "-o",
                                         "x.npz"), "must be >= 1"),
    Case("sample", "--batch-size 0", fixed("sample", "--system", "HO2", "--batch-size", "0",
                                           "-o", "x.npz"), "must be >= 1"),
    Case("sample", "negative rattle amplitude", fixed("sample", "--system", "HO2", "--sigma",
                                                      "-0.1", "-o", "x.npz"), "sigma must be"),
    Case("sample", "NaN rattle amplitude", fixed("sample", "--system", "HO2", "--sigma", "nan",
                                                 "-o", "x.npz"), "sigma must be"),
    Case("sample", "teacher that does not fit the system", fixed(
        "sample", "--system", "HO2", "--teacher", "tip3p", "-o", "x.npz"), "teacher"),
    Case("sample", "missing Q-Force parameter file", fixed(
        "sample", "--system", "HO2", "--parameters", "nope.json", "-o", "x.npz"),
        "Q-Force parameters"),
    Case("sample", "malformed Q-Force parameter file", fixed(
        "sample", "--system", "HO2", "--parameters", P("bad_json"), "-o", "x.npz"),
        "malformed"),
    Case("sample", "output with an unknown suffix", fixed(
        "sample", "--system", "HO2", "-o", "x.csv"), "use a .npz"),
    Case("sample", "output is a folder", fixed("sample", "--system", "HO2", "-o", P("notes")),
         "is a folder", check=notes_untouched),
    Case("sample", "lone Cl atom (no teacher parameters)", fixed(
        "sample", "--system", P("cl"), "--teacher", "qforce", "-o", "x.npz"), "lone Cl"),
    Case("sample", "lone Fe atom (no teacher parameters)", fixed(
        "sample", "--system", P("fe"), "--teacher", "qforce", "-o", "x.npz"), "lone Fe"),
    Case("sample", "output below a file", fixed(
        "sample", "--system", "HO2", "--n", "10", "-o", P("a_file", "/pt.npz")),
        "a_file.txt is a file"),
    Case("sample", "checkpoint of another sampling run (other seed)",
         lambda e: ["sample", "--system", "HO2", "--n", "20", "--seed", "2", "-o",
                    str(e["tmp"] / "pt.npz"), "--quiet"],
         "belongs to another sampling run", setup=partial_sample),
    # ---------------------------------------------------------------- data
    Case("data", "missing file", fixed("data", "info", "missing.npz"), "no such file"),
    Case("data", "random bytes as .npz", fixed("data", "info", P("garbage")),
         "not a readable .npz"),
    Case("data", "truncated .npz", fixed("data", "info", P("truncated")),
         "not a readable .npz"),
    Case("data", "corrupted .npz (bytes overwritten)", fixed("data", "info", P("corrupt")),
         ".npz"),
    Case("data", ".npz with unknown arrays", fixed("data", "info", P("wrong_keys")),
         "unknown .npz layout"),
    Case("data", "unknown file format", fixed("data", "info", P("csv")),
         "unknown data format"),
    Case("data", "empty .xyz file", fixed("data", "info", P("empty_xyz")), "empty.xyz"),
    Case("data", "DeePMD folder without type.raw", fixed("data", "info", P("deepmd")),
         "type.raw"),
    Case("data", "convert to an unknown format", fixed("data", "convert", P("data"),
                                                       "out.csv"), "cannot write"),
    Case("data", "convert without OUT", fixed("data", "convert", P("data")), "needs IN and OUT"),
    Case("data", "--stress-key on a format with fixed labels", fixed(
        "data", "info", P("data"), "--stress-key", "REF_stress"), "fixed labels"),
    # ---------------------------------------------------------------- train
    Case("train", "missing data file", train_argv(data_path="missing.npz"), "no such file"),
    Case("train", "random bytes as data", train_argv(data="garbage"), "not a readable .npz"),
    Case("train", "truncated data file", train_argv(data="truncated"), "not a readable .npz"),
    Case("train", "NaN coordinate in the data", train_argv(data="nan_data"), "non-finite"),
    Case("train", "data without labels", train_argv(data="nolabels"),
         "need energies and forces"),
    Case("train", "--epochs 0", train_argv(extra=["--epochs", "0"]), "epochs must be >= 1"),
    Case("train", "--batch-size 0", train_argv(extra=["--batch-size", "0"]),
         "batch_size must be >= 1"),
    Case("train", "--features 0", train_argv(extra=["--features", "0"]),
         "features must be >= 1"),
    Case("train", "negative cutoff", train_argv(extra=["--cutoff", "-1"]), "cutoff must be"),
    Case("train", "negative learning rate", train_argv(extra=["--lr=-1e-3"]),
         "lr must be > 0"),
    Case("train", "NaN learning rate", train_argv(extra=["--lr", "nan"]), "lr must be > 0"),
    Case("train", "lr factor above 1", train_argv(extra=["--lr-factor", "1.5"]),
         "lr_factor must be"),
    Case("train", "negative patience", train_argv(extra=["--lr-patience", "-1"]),
         "lr_patience must be"),
    Case("train", "a plateau window of 0 epochs", train_argv(extra=["--plateau-epochs", "0"]),
         "plateau_epochs must be >= 1"),
    Case("train", "a plateau improvement of 100 %",
         train_argv(extra=["--plateau-improvement", "1"]), "plateau_improvement must be"),
    Case("train", "negative force weight", train_argv(extra=["--w-forces", "-1"]),
         "w_forces must be"),
    Case("train", "both loss weights 0", train_argv(extra=["--w-forces", "0", "--w-energy",
                                                           "0"]), "nothing to train on"),
    Case("train", "validation fraction 1.5", train_argv(extra=["--val-fraction", "1.5"]),
         "val_fraction"),
    Case("train", "more validation frames than data", train_argv(extra=["--n-val", "1000"]),
         "cannot take"),
    Case("train", "--n-train 0", train_argv(extra=["--n-train", "0"]), "n_train must be"),
    Case("train", "negative seed", train_argv(extra=["--seed", "-1"]), "seed must be"),
    Case("train", "negative threads", train_argv(extra=["--threads", "-2"]), "threads must be"),
    Case("train", "zero wall-time budget", train_argv(extra=["--max-time", "0"]),
         "max_time_s must be"),
    Case("train", "finetune without --init", fixed("train", "--stage", "finetune", "--data",
                                                   P("data"), "-o", "x"), "--init"),
    Case("train", "unknown stage", fixed("train", "--stage", "warmup"), "invalid choice"),
    Case("train", "stress weight on frames without stresses", train_argv(
        extra=["--w-stress", "1"]), "have no stresses"),
    Case("train", "--refit-scale without a checkpoint to start from", train_argv(
        extra=["--refit-scale"]), "needs a checkpoint to start from"),
    Case("train", "negative stress weight", train_argv(extra=["--w-stress", "-1"]),
         "w_stress must be >= 0"),
    Case("train", "a device that is not a torch device", train_argv(
        extra=["--device", "gpu0"]), "not a torch device"),
    Case("train", "WORLD_SIZE set without torchrun", train_argv(),
         "start distributed training with torchrun",
         setup=lambda env, tmp, mp: mp.setenv("WORLD_SIZE", "2")),
    Case("train", "missing --init checkpoint", train_argv(extra=["--init", "missing.pt"]),
         "not found"),
    Case("train", "malicious pickle as --init", lambda e: train_argv(
        extra=["--init", str(e["evil"])])(e), "could not be read"),
    Case("train", "data file as --init", lambda e: train_argv(
        extra=["--init", str(e["data"])])(e), "could not be read"),
    Case("train", "--init of another architecture with --features 16", lambda e: train_argv(
        extra=["--init", str(e["model"]), "--features", "16"])(e), "different architecture"),
    Case("train", "data with an element the --init model lacks", lambda e: [
        "train", "--stage", "finetune", "--data", str(e["carbon"]), "--init", str(e["model"]),
        "-o", str(e["tmp"] / "ft")], "trained for elements"),
    Case("train", "temporal pairs on shuffled rattled frames",
         train_argv(extra=["--temporal-pairs"]), "need time-ordered data"),
    Case("train", "missing --config file", train_argv(extra=["--config", "nope.toml"]),
         "nope.toml"),
    Case("train", "invalid TOML", lambda e: train_argv(extra=["--config",
                                                              str(e["bad_toml"])])(e),
         "not valid TOML"),
    Case("train", "unknown TOML key", lambda e: train_argv(extra=["--config",
                                                                 str(e["unknown_toml"])])(e),
         "unknown keys"),
    Case("train", "output folder holds someone's files", train_argv(out=lambda e: e["notes"]),
         "not an ffpt-ase run folder", check=notes_untouched),
    Case("train", "--start-over on a folder that is not a run", train_argv(
        out=lambda e: e["notes"], extra=["--start-over"]), "not an ffpt-ase run folder",
        check=notes_untouched),
    Case("train", "output is a file", train_argv(out=lambda e: e["a_file"]), "is a file"),
    Case("train", "output below a file", train_argv(out=lambda e: e["a_file"] / "run"),
         "a_file.txt is a file"),
    Case("train", "resume with another learning rate", train_argv(
        out=in_tmp("train"), extra=["--epochs", "2", "--lr", "0.01"]), "settings.lr",
        setup=copied("train"), check=unchanged_copy("train")),
    Case("train", "resume with another force weight", train_argv(
        out=in_tmp("train"), extra=["--epochs", "2", "--w-forces", "5"]), "settings.w_forces",
        setup=copied("train"), check=unchanged_copy("train")),
    Case("train", "resume on other data", train_argv(out=in_tmp("train"), data="data2",
                                                     extra=["--epochs", "2"]),
         "inputs.data", setup=copied("train"), check=unchanged_copy("train")),
    Case("train", "resume with another seed", train_argv(
        out=in_tmp("train"), extra=["--epochs", "2", "--seed", "3"]), "settings.seed",
        setup=copied("train"), check=unchanged_copy("train")),
    Case("train", "planted malicious last.pt in the run folder", train_argv(
        out=in_tmp("train"), extra=["--epochs", "3"]), "could not be read",
        setup=planted_last_pt),
    Case("train", "damaged run.json", train_argv(out=in_tmp("train"), extra=["--epochs", "2"]),
         "run.json is damaged", setup=damage("train", "run.json")),
    Case("train", "run folder in use by another process", train_argv(
        out=in_tmp("train"), extra=["--epochs", "3"]), "in use by another process",
        setup=lock_folder("train"), check=unchanged_copy("train")),
    Case("train", "disk full while writing last.pt", train_argv(
        out=in_tmp("train"), extra=["--epochs", "3"]), "No space left on device",
        setup=disk_full_at_last_pt, check=unchanged_copy("train")),
    Case("train", "Ctrl-C during an epoch", train_argv(out=in_tmp("t_int")),
         "run the same command again", code=130, setup=ctrl_c_in_training),
    # ---------------------------------------------------------------- evaluate
    Case("evaluate", "missing model", fixed("evaluate", "missing.pt", P("data")), "not found"),
    Case("evaluate", "malicious pickle as model", fixed("evaluate", P("evil"), P("data")),
         "could not be read"),
    Case("evaluate", "data file as model", fixed("evaluate", P("data"), P("data")),
         "could not be read"),
    Case("evaluate", "CUDA asked for on a machine without it", fixed(
        "evaluate", P("model"), P("data"), "--device", "cuda:7"), "cuda"),
    Case("evaluate", "missing data", fixed("evaluate", P("model"), "missing.npz"),
         "no such file"),
    Case("evaluate", "negative batch size", fixed("evaluate", P("model"), P("data"),
                                                  "--batch-size", "-1"),
         "batch size must be >= 1"),
    Case("evaluate", "batch size 0", fixed("evaluate", P("model"), P("data"), "--batch-size",
                                           "0"), "batch size must be >= 1"),
    Case("evaluate", "negative number of worst frames", fixed(
        "evaluate", P("model"), P("data"), "--worst", "-3"), "--worst must be >= 0"),
    Case("evaluate", "grouping by a value the frames do not carry", fixed(
        "evaluate", P("model"), P("data"), "--group-by", "reaction"), "no per-frame 'reaction'"),
    Case("evaluate", "NaN coordinate in the data", fixed("evaluate", P("model"), P("nan_data")),
         "non-finite coordinates"),
    Case("evaluate", "element unknown to the model", fixed("evaluate", P("model"), P("carbon")),
         "not known to the model"),
    Case("evaluate", "frames without reference labels", fixed("evaluate", P("model"),
                                                              P("nolabels")),
         "no reference energies or forces"),
    Case("evaluate", "negative threads", fixed("evaluate", P("model"), P("data"), "--threads",
                                               "-1"), "threads must be"),
    Case("evaluate", "corrupted data file", fixed("evaluate", P("model"), P("corrupt")),
         ".npz"),
    # ---------------------------------------------------------------- compare
    Case("compare", "malicious pickle as model B", fixed("compare", P("model"), P("evil"),
                                                         P("data")), "could not be read"),
    Case("compare", "missing model A", fixed("compare", "missing.pt", P("model"), P("data")),
         "not found"),
    Case("compare", "block of 0 frames", fixed("compare", P("model"), P("model"), P("data"),
                                               "--block", "0"), "--block must be >= 1"),
    Case("compare", "confidence of 95 (a percentage)", fixed(
        "compare", P("model"), P("model"), P("data"), "--confidence", "95"),
        "--confidence must be between 0 and 1"),
    Case("compare", "too few resamples", fixed("compare", P("model"), P("model"), P("data"),
                                               "--resamples", "10"), "--resamples must be"),
    Case("compare", "frames without reference labels", fixed("compare", P("model"),
                                                             P("model"), P("nolabels")),
         "needs reference energies and forces"),
    Case("compare", "grouping by a value the frames do not carry", fixed(
        "compare", P("model"), P("model"), P("data"), "--group-by", "reaction"),
        "no per-frame 'reaction'"),
    # ---------------------------------------------------------------- metad
    Case("metad", "unknown reaction channel", metad_argv("--reaction", "99"),
         "unknown reaction channel"),
    Case("metad", "neither a channel nor a deck", fixed("metad", "--model", P("model"),
                                                        "--steps", "10", "-o", "x"),
         "--reaction NN"),
    Case("metad", "missing deck", lambda e: deck_argv("deck")(e)[:2] + ["missing.dat"]
         + deck_argv("deck")(e)[3:], "not found"),
    Case("metad", "deck without UNITS", deck_argv("nounits"), "declares no UNITS",
         check=no_output(lambda e: e["tmp"] / "d_new")),
    Case("metad", "deck with an unknown time unit", deck_argv("bad_units"),
         "unknown PLUMED time unit"),
    Case("metad", "missing start structure", deck_argv("deck", "marker"),
         "start structure not found"),
    Case("metad", "start structure with an element the model lacks", deck_argv("deck", "cl"),
         "not known to the model"),
    Case("metad", "start structure with a NaN coordinate", deck_argv("deck", "nan_xyz"),
         "non-finite"),
    Case("metad", "start structure with the wrong atoms for the channel",
         metad_argv("--start", "WRONG"), "needs"),
    Case("metad", "missing model", metad_argv(model="marker"), "not found"),
    Case("metad", "malicious pickle as model", metad_argv(model="evil"), "could not be read"),
    Case("metad", "negative temperature", metad_argv("--temperature", "-300"),
         "temperature > 0"),
    Case("metad", "zero time step", metad_argv("--timestep", "0"), "timestep > 0"),
    Case("metad", "negative steps", metad_argv("--steps", "-1"), "steps >= 0"),
    Case("metad", "negative friction", metad_argv("--friction", "-1"), "friction >= 0"),
    Case("metad", "checkpoint interval 0", metad_argv("--traj-interval", "0"), "intervals"),
    Case("metad", "check interval 0", metad_argv("--check-interval", "0"), "intervals"),
    Case("metad", "negative seed", metad_argv("--seed", "-4"), "seed must be"),
    Case("metad", "output folder holds someone's files", metad_argv(out=lambda e: e["notes"]),
         "not an ffpt-ase run folder", check=notes_untouched),
    Case("metad", "resume at another temperature", metad_argv(
        "--temperature", "500", out=in_tmp("metad")), "temperature_K: 300.0 -> 500.0",
        setup=copied("metad"), check=unchanged_copy("metad")),
    Case("metad", "resume with another time step", metad_argv(
        "--timestep", "0.5", out=in_tmp("metad")), "timestep_fs", setup=copied("metad"),
        check=unchanged_copy("metad")),
    Case("metad", "resume as another reaction", lambda e: [
        "metad", "--reaction", "10", "--model", str(e["model"]), "--steps", "60",
        "--traj-interval", "20", "-o", str(e["tmp"] / "metad"), "--quiet"],
        "reaction: '09' -> '10'", setup=copied("metad"), check=unchanged_copy("metad")),
    Case("metad", "resume with another model", metad_argv(out=in_tmp("metad"), model="model2"),
         "inputs.model", setup=copied("metad"), check=unchanged_copy("metad")),
    Case("metad", "resume with another friction", metad_argv(
        "--friction", "2", out=in_tmp("metad")), "friction_per_ps", setup=copied("metad"),
        check=unchanged_copy("metad")),
    Case("metad", "torn state.json", metad_argv("--steps", "80", out=in_tmp("metad")),
         "state.json is damaged", setup=damage("metad", "state.json")),
    Case("metad", "trajectory deleted behind the run's back", metad_argv(
        "--steps", "80", out=in_tmp("metad")), "trajectory.traj is missing",
        setup=remove("metad", "trajectory.traj")),
    Case("metad", "run folder in use by another process", metad_argv(
        "--steps", "80", out=in_tmp("metad")), "in use by another process",
        setup=lock_folder("metad"), check=unchanged_copy("metad")),
    Case("metad", "Ctrl-C during the dynamics", metad_argv(out=in_tmp("m_int")),
         "run the same command again", code=130, setup=ctrl_c_in_metad),
    # ---------------------------------------------------------------- stability
    Case("metad", "zero walkers", metad_argv("--walkers", "0"), "walkers >= 1"),
    Case("metad", "walkers with a deck that sets up walkers itself",
         deck_argv("walkers_deck", "water", "--walkers", "2"), "sets up multiple walkers"),
    Case("stability", "a device that is not one", stab_argv("--device", "gpu0"),
         "is not a torch device"),
    Case("stability", "a GPU that is not there", stab_argv("--device", "cuda:99"),
         "device 'cuda:99'"),
    Case("stability", "unknown engine", stab_argv("--engine", "openmm"), "invalid choice"),
    Case("stability", "negative batch size", stab_argv("--batch-size", "-2"), "batch_size=-2"),
    Case("stability", "checkpoint interval 0", stab_argv("--checkpoint-interval", "0"),
         "checkpoint_interval=0"),
    Case("stability", "zero simulated time", stab_argv("--time-ps", "0"), "time_ps=0"),
    Case("stability", "negative simulated time", stab_argv("--time-ps", "-1"), "time_ps=-1"),
    Case("stability", "no trajectories", stab_argv("--trajectories", "0"), "trajectories=0"),
    Case("stability", "negative temperature", stab_argv("--temperature", "-5"),
         "temperature_K=-5"),
    Case("stability", "zero time step", stab_argv("--timestep", "0"), "timestep_fs=0"),
    Case("stability", "check interval 0", stab_argv("--check-interval", "0"),
         "check_interval=0"),
    Case("stability", "RDF tolerance 0", stab_argv("--rdf-max-error", "0"), "rdf_max_error"),
    Case("stability", "unknown system", stab_argv(system="HO3"), "unknown system"),
    Case("stability", "element the model lacks (not an MD failure)",
         stab_argv(system=lambda e: str(e["cl"])), "not known to the model",
         check=no_output(lambda e: e["tmp"] / "s_new")),
    Case("stability", "structure with a NaN coordinate",
         stab_argv(system=lambda e: str(e["nan_xyz"])), "non-finite"),
    Case("stability", "malicious pickle as model", stab_argv(model="evil"),
         "could not be read"),
    Case("stability", "missing reference frames", stab_argv("--reference-frames",
                                                            "missing.xyz"), "not found"),
    Case("stability", "resume with a longer time per trajectory", stab_argv(
        "--time-ps", "1", out=in_tmp("stab")), "time_ps: 0.005 -> 1.0", setup=copied("stab"),
        check=unchanged_copy("stab")),
    Case("stability", "resume with another model", stab_argv(out=in_tmp("stab"),
                                                             model="model2"),
         "inputs.model", setup=copied("stab"), check=unchanged_copy("stab")),
    Case("stability", "resume at another temperature", stab_argv(
        "--temperature", "500", out=in_tmp("stab")), "temperature_K", setup=copied("stab"),
        check=unchanged_copy("stab")),
    Case("stability", "output folder holds someone's files", stab_argv(
        out=lambda e: e["notes"]), "not an ffpt-ase run folder", check=notes_untouched),
    Case("stability", "damaged line in trajectories.jsonl", stab_argv(
        "--trajectories", "3", out=in_tmp("stab")), "line 1 is damaged",
        setup=damage("stab", "trajectories.jsonl", b"{torn\n{}\n")),
    # ---------------------------------------------------------------- fes
    Case("fes", "missing run folder", fixed("fes", "missing", "-o", "f"), "no HILLS file"),
    Case("fes", "--bins 1", lambda e: ["fes", str(e["runs"] / "metad"), "-o",
                                       str(e["dir"] / "f"), "--bins", "1"], "--bins must be"),
    Case("fes", "negative temperature", lambda e: ["fes", str(e["runs"] / "metad"), "-o",
                                                   str(e["dir"] / "f"), "--temperature", "-1"],
         "--temperature must be > 0"),
    Case("fes", "HILLS file of garbage", lambda e: ["fes", str(e["csv"]), "-o",
                                                    str(e["dir"] / "f")], "frames.csv"),
    # ---------------------------------------------------------------- export
    Case("export", "missing model", fixed("export", "missing.pt", "-o", "m.pt"), "not found",
         check=no_output(lambda e: e["tmp"] / "m.pt")),
    Case("export", "malicious pickle as model", fixed("export", P("evil"), "-o", "m.pt"),
         "could not be read", check=no_output(lambda e: e["tmp"] / "m.pt")),
    Case("export", "output without .pt", fixed("export", P("model"), "-o", "m.json"),
         "ending in .pt", check=no_output(lambda e: e["tmp"] / "m.json")),
    Case("export", "OpenMM structure with an element the model lacks", fixed(
        "export", P("model"), "-o", "m.pt", "--openmm", P("cl")), "not known to the model",
         check=no_output(lambda e: e["tmp"] / "m.pt")),
    Case("export", "missing OpenMM structure", fixed("export", P("model"), "-o", "m.pt",
                                                     "--openmm", "missing.xyz"),
         "structure file not found", check=no_output(lambda e: e["tmp"] / "m.pt")),
    # ---------------------------------------------------------------- other commands
    Case("demo", "negative pre-training time", fixed("demo", "-o", "d", "--quick",
                                                     "--pretrain-minutes", "-1"),
         "--pretrain-minutes must be > 0"),
    Case("demo", "zero frames per species", fixed("demo", "-o", "d", "--quick", "--n", "0"),
         "--n must be >= 1"),
    Case("bench", "zero calls", fixed("bench", "speed", "--calls", "0"), "--calls must be"),
    Case("bench", "zero features", fixed("bench", "speed", "--features", "0"),
         "--features must be"),
    Case("parametrize", "gaff2 without a molecule", fixed("parametrize", "gaff2", "-o", "p"),
         "needs a molecule"),
    Case("parametrize", "qforce output below a file", fixed("parametrize", "qforce", "-o",
                                                            P("a_file", "/q.json")),
         "a_file.txt is a file"),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c.area}: {c.what}" for c in CASES])
def test_bad_input_gets_one_line_and_a_nonzero_exit(case, env, tmp_path, monkeypatch, capsys):
    from ffpt_ase.cli.main import main
    monkeypatch.chdir(tmp_path)
    e = {**env, "tmp": tmp_path, "WRONG": env["wrong_atoms"]}
    before = tree_digest(env["runs"])
    if case.setup:
        case.setup(env, tmp_path, monkeypatch)
    argv = [str(e["wrong_atoms"]) if a == "WRONG" else a for a in case.argv(e)]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse
        code = exit_.code
    out, err = capsys.readouterr()
    # progress bars (carriage returns) may precede the one line of the error
    lines = [line for line in err.splitlines() if line.strip() and "\r" not in line
             and "/s]" not in line]
    assert code == case.code, (code, err)
    assert len(lines) == 1, err
    assert lines[0].startswith("ffpt-ase") and case.expect in lines[0], lines[0]
    assert "Traceback" not in out + err and "internal error" not in err
    assert not env["marker"].exists(), "code from a file ran"
    assert tree_digest(env["runs"]) == before, "an existing run changed"
    if case.check:
        case.check(env, tmp_path)
    import os
    while HELD:
        os.close(HELD.pop())


def test_there_are_at_least_100_cases():
    assert len(CASES) >= 100


def table() -> str:
    rows = ["| # | area | bad input or fault | the one line says (excerpt) | exit |",
            "|---|---|---|---|---|"]
    for k, c in enumerate(CASES, 1):
        rows.append(f"| {k} | {c.area} | {c.what} | `{c.expect}` | {c.code} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
