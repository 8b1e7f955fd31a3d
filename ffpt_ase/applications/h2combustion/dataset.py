"""The hydrogen-combustion data set (Guan et al., Sci. Data 9, 215 (2022); wB97X-V/cc-pVTZ)
as the benchmark uses it: which files, and seeded train/test splits of each.

Files: IRC + AIMD + normal-mode files of the 19 channels (``12_*`` for channel 12 with the
corrected ``12a_irc_{d,q}_corr`` IRCs; the uncorrected ``12_irc``, the duplicate
``12a_*_all``/``12b_*_all`` files and the extra ``20``/``21`` AIMD sets are not used).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...data import Frames, read_combustion_npz

EXCLUDED = ("12_irc", "12a_aimd_all", "12a_irc_all", "12a_nm_all", "12b_aimd_all",
            "12b_irc_all", "12b_nm_all", "20_aimd", "21_aimd")

#: the data set's level of theory as PySCF settings (UKS for open shells)
DATA_LEVEL = {"xc": "wb97x-v", "basis": "cc-pvtz"}

#: what frames of the data set are: the fidelity check of training reads ``teacher``
METADATA = {"teacher": "ab initio", "method": "wB97X-V/cc-pVTZ (h2combustion data set)"}


def data_files(data: str | Path, kinds=("irc", "aimd", "nm")) -> list:
    """The npz files of the 19 channels used here (module docstring), of the given kinds."""
    folder = Path(data) / "npz"
    files = sorted(f for f in folder.glob("*.npz")
                   if f.stem not in EXCLUDED and any(f"_{k}" in f.stem for k in kinds))
    if not files:
        raise FileNotFoundError(f"no hydrogen-combustion npz files in {folder}; pass the data "
                                "set's folder (the one holding npz/)")
    return files


def split_file(frames: Frames, fraction: float, n_test: int, seed: int):
    """Seeded disjoint (train+val, test) index sets of one file: ``fraction`` of the frames
    (at least 5) and up to ``n_test`` of the rest."""
    if not 0 < fraction < 1:
        raise ValueError(f"the training fraction must be between 0 and 1, got {fraction}")
    n = len(frames)
    perm = np.random.default_rng(seed).permutation(n)
    k = min(n, max(5, round(fraction * n)))
    return np.sort(perm[:k]), np.sort(perm[k:k + n_test])


def train_test_sets(data: str | Path, fraction: float, n_test: int, seed: int = 0,
                    verbose: bool = False):
    """``(train+val, test)`` Frames: a seeded ``fraction`` of every file (the paper: 10 %) and
    up to ``n_test`` other frames of every file; file ``k`` is split with seed ``seed + k``.
    Subsets are not time ordered (their ``time`` is dropped)."""
    tr, te = [], []
    for k, f in enumerate(data_files(data)):
        frames = read_combustion_npz(f)
        frames.time = None
        a, b = split_file(frames, fraction, n_test, seed + k)
        tr.append(frames[a])
        te.append(frames[b])
        if verbose:
            print(f"  {f.name}: {len(a)} train+val, {len(b)} test of {len(frames)}", flush=True)
    meta = {**METADATA, "source": str(data), "train_fraction": fraction}
    out = []
    for parts in (tr, te):
        frames = Frames.concatenate(parts)
        frames.metadata = dict(meta)
        out.append(frames)
    return tuple(out)


def time_windows(data: str | Path, window: int, test_start: int, test_len: int):
    """Time-ordered sets of the AIMD files for the temporal-pair loss: the first ``window``
    frames of every file (training), frames ``test_start`` .. ``test_start + test_len`` of
    every file (test), and all IRC frames (an out-of-distribution test). Time offsets keep
    the files apart, so no pair (t, t+1) joins the end of one file to the next."""
    tr, te = [], []
    for f in data_files(data, kinds=("aimd",)):
        frames = read_combustion_npz(f)
        part = frames[np.arange(min(window, len(frames)))]
        part.time = part.time - part.time[0] + (tr[-1].time[-1] + 10 if tr else 0)
        tr.append(part)
        block = frames[np.arange(test_start, min(test_start + test_len, len(frames)))]
        if len(block):
            block.time = block.time - block.time[0] + (te[-1].time[-1] + 10 if te else 0)
            te.append(block)
    if not te:
        raise ValueError(f"no AIMD file has frames from {test_start} on: lower the test start")
    irc = Frames.concatenate([read_combustion_npz(f) for f in data_files(data, kinds=("irc",))])
    out = {"train": Frames.concatenate(tr), "test": Frames.concatenate(te), "irc": irc}
    for frames in out.values():
        frames.metadata = {**METADATA, "source": str(data)}
    return out
