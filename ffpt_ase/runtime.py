"""Process-wide numerics settings, defined once: the model dtypes by name, the torch device
and torch's thread count.

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


def usable_device(name):
    """``torch.device(name)`` if this torch can put tensors there, else a ValueError that
    says why (not a torch device; CUDA asked for but not built in or no GPU visible)."""
    import torch
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {name!r} is not a torch device (cpu, cuda, cuda:1, ...)"
                         ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r}: this torch {torch.__version__} has no usable CUDA "
                         "(a CPU build, or no GPU visible); use --device cpu")
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as err:
        raise ValueError(f"device {name!r} is not usable here ({err})") from None
    return device
