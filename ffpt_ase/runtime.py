"""Process-wide numerics settings, defined once: the model dtypes by name and torch's thread
count.

Torch's intra-op thread count is global to the process. Only entry points set it (the
command line, and the one-call wrappers ``train``, ``run_metadynamics`` and ``run_stability``
when their settings name a count); library pieces that receive a model never touch it.
"""

from __future__ import annotations

DTYPE_NAMES = ("float32", "float64")


def torch_dtype(name: str):
    """The torch dtype of a model dtype name (``'float32'`` or ``'float64'``)."""
    import torch
    if name not in DTYPE_NAMES:
        raise ValueError(f"dtype must be one of {DTYPE_NAMES}, got {name!r}")
    return getattr(torch, name)


def set_threads(threads: int | None) -> None:
    """Set torch's intra-op thread count (``None`` or 0: leave torch's choice).

    One thread is usually fastest for molecules of a few atoms and on a shared machine, where
    two threads contend with other jobs for the same cores.
    """
    if threads is None or threads == 0:
        return
    if threads < 0:
        raise ValueError(f"threads must be >= 1 (or 0 for torch's default), got {threads}")
    import torch
    torch.set_num_threads(int(threads))
