"""Pre-trained FFPT models shipped with the package, addressed as ``pretrained:NAME``.

Each model is a checkpoint ``ffpt_ase/models/NAME.pt`` with its provenance in
``NAME.json`` (teacher, frames, seed, model size, epochs, final validation errors, the
command that made it and the hardware it ran on). Anything that takes a checkpoint path
(``FFPTCalculator``, ``ffpt-ase train --init``, ``metad --model``, ...) also takes
``pretrained:NAME``; ``ffpt-ase pretrained`` lists what is shipped.
"""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

PREFIX = "pretrained:"


def models_dir() -> Path:
    return Path(str(resources.files("ffpt_ase.models")))


def available() -> dict:
    """``{name: provenance}`` of the shipped models."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(models_dir().glob("*.json"))
            if p.with_suffix(".pt").exists()}


def resolve_checkpoint(spec) -> Path:
    """A checkpoint path from a path or ``pretrained:NAME``."""
    text = str(spec)
    if not text.startswith(PREFIX):
        return Path(spec)
    name = text[len(PREFIX):]
    path = models_dir() / f"{name}.pt"
    if not path.exists():
        raise FileNotFoundError(f"no shipped pre-trained model {name!r}; available: "
                                f"{', '.join(available()) or 'none'}")
    return path


def install_pretrained(name: str, checkpoint, provenance: dict) -> Path:
    """Copy a checkpoint into the package's models as ``NAME.pt`` with ``NAME.json``
    (a maintainer step: the result is committed)."""
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"model name {name!r}: letters, digits, '-' and '_' only")
    dst = models_dir() / f"{name}.pt"
    shutil.copyfile(checkpoint, dst)
    (models_dir() / f"{name}.json").write_text(json.dumps(provenance, indent=1, default=str)
                                               + "\n")
    return dst
