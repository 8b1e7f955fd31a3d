"""Statistics over independent runs (walkers, trajectories)."""

from __future__ import annotations

import numpy as np


def standard_error(x):
    """Standard error of the mean over the first axis of ``x`` (sample standard deviation,
    ddof 1, over sqrt(n)): a float for one value per run, an array for arrays (an RDF per
    trajectory); None for fewer than two runs, where no error can be estimated."""
    x = np.asarray(x, float)
    if len(x) < 2:
        return None
    sem = x.std(axis=0, ddof=1) / np.sqrt(len(x))
    return float(sem) if sem.ndim == 0 else sem
