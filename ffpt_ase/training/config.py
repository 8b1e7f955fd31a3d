"""Training configuration: defaults follow the FFPT paper; a TOML file and CLI flags override.

Stages and their default learning rates: ``scratch`` 1e-3, ``pretrain`` 1e-4, ``finetune``
1e-4 (fine-tuning must start from a checkpoint, ``init``). Adam, ReduceLROnPlateau (factor
0.7, patience 50 epochs) on the validation loss, stop when the learning rate has fallen to
1 % of its start, after ``epochs`` epochs, or after ``max_time_s`` seconds.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

STAGES = ("scratch", "pretrain", "finetune")
STAGE_LR = {"scratch": 1e-3, "pretrain": 1e-4, "finetune": 1e-4}


@dataclass
class TrainConfig:
    stage: str = "scratch"
    data: str = ""
    output: str = "runs/model"
    init: str | None = None            # checkpoint to start from (required for finetune)
    # model (ignored for finetune, where the checkpoint's architecture is used)
    features: int = 128
    interactions: int = 3
    basis: int = 20
    cutoff: float = 5.0
    # optimisation
    lr: float | None = None            # default from the stage
    epochs: int = 1000
    batch_size: int = 32
    lr_factor: float = 0.7
    lr_patience: int = 50
    min_lr_ratio: float = 0.01
    max_time_s: float | None = None
    w_energy: float = 1.0
    w_forces: float = 20.0
    temporal_pairs: bool = False       # FRAMES temporal-pair auxiliary loss
    w_temporal: float = 1.0
    # data split
    n_train: int | None = None         # default: everything not in validation
    n_val: int | None = None           # default: val_fraction of the frames
    val_fraction: float = 0.05
    seed: int = 0
    # numerics
    dtype: str = "float32"
    threads: int | None = None
    # bookkeeping
    explicit: list = field(default_factory=list, repr=False)  # fields set by the user

    def __post_init__(self):
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if self.stage == "finetune" and not self.init:
            raise ValueError("the finetune stage starts from a pre-trained checkpoint: give "
                             "--init runs/pt/best.pt")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}")
        if self.lr is None:
            self.lr = STAGE_LR[self.stage]
        for name in ("batch_size", "epochs", "features", "interactions", "basis"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.cutoff <= 0:
            raise ValueError("cutoff must be positive (Angstrom)")

    @classmethod
    def from_sources(cls, file: str | None = None, **overrides) -> "TrainConfig":
        """Defaults < TOML file < explicit overrides (``None`` values are ignored)."""
        values = {}
        if file:
            with open(file, "rb") as fh:
                raw = tomllib.load(fh)
            raw = raw.get("train", raw)
            unknown = set(raw) - {f.name for f in dataclasses.fields(cls)}
            if unknown:
                raise ValueError(f"unknown keys in {file}: {sorted(unknown)}")
            values.update(raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        values["explicit"] = sorted(k for k in values if k != "explicit")
        return cls(**values)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("explicit")
        return d

    @property
    def output_dir(self) -> Path:
        return Path(self.output)
