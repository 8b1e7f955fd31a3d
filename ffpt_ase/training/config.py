"""Training configuration: defaults follow the FFPT paper; a TOML file and CLI flags override.

Stages and their default learning rates: ``scratch`` 1e-3, ``pretrain`` 1e-4, ``finetune``
1e-4 (fine-tuning must start from a checkpoint, ``init``). Adam, ReduceLROnPlateau (factor
0.7, patience 50 epochs) on the validation loss, stop when the learning rate has fallen to
1 % of its start, when the validation force MAE is on a plateau (``plateau_epochs``, off by
default), after ``epochs`` epochs, or after ``max_time_s`` seconds.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

from ..runtime import DTYPE_NAMES
from ..settings import RunSettings, from_sources, redefault, setting

STAGES = ("scratch", "pretrain", "finetune")
LOSSES = ("mse", "huber")   # the error functions of training.losses.error_term
STAGE_LR = {"scratch": 1e-3, "pretrain": 1e-4, "finetune": 1e-4}
#: the settings that say where frame files keep their labels (every command that reads
#: frames takes them)
LABEL_KEY_FIELDS = ("energy_key", "forces_key", "stress_key")


@dataclass(kw_only=True)
class TrainConfig(RunSettings):
    """Settings of one training stage (TOML table ``[train]``, flags of ``ffpt-ase train``)."""

    stage: str = setting("scratch", "training stage (sets the default learning rate)",
                         choices=STAGES)
    data: str = setting("", "frames (.npz, .xyz, .traj, DeePMD folder)", role="input")
    output: str = redefault(RunSettings, "output", "runs/model")
    init: str | None = setting(None, "checkpoint to start from (finetune; also "
                                     "pretrained:NAME)", role="input")
    # model (ignored for finetune, where the checkpoint's architecture is used)
    features: int = setting(128, "NewtonNet feature width")
    interactions: int = setting(3, "message-passing layers")
    basis: int = setting(20, "radial basis functions")
    cutoff: float = setting(5.0, "neighbour cutoff", unit="A")
    # optimisation
    lr: float | None = setting(None, "start learning rate (default: 1e-3 scratch, 1e-4 "
                                     "pretrain and finetune)")
    epochs: int = setting(1000, "maximum epochs", role="free")
    batch_size: int = setting(32, "frames per optimizer step")
    lr_factor: float = setting(0.7, "ReduceLROnPlateau factor")
    lr_patience: int = setting(50, "ReduceLROnPlateau patience", unit="epochs")
    min_lr_ratio: float = setting(0.01, "stop when the learning rate falls to this fraction "
                                        "of its start")
    plateau_epochs: int | None = setting(None, "stop when the best validation force MAE of "
                                               "the last this many epochs improved on the "
                                               "best before them by less than "
                                               "plateau_improvement (default: no plateau "
                                               "rule)", unit="epochs", role="free")
    plateau_improvement: float = setting(0.01, "the plateau rule's smallest relative "
                                               "improvement (0.01: one per cent)", role="free")
    max_time_s: float | None = setting(None, "wall-time budget", unit="s", flag="--max-time",
                                       role="free")
    w_energy: float = setting(1.0, "energy loss weight")
    w_forces: float = setting(20.0, "force loss weight")
    w_stress: float = setting(0.0, "stress loss weight (errors in eV/A^3; 0: stresses are "
                                   "not trained; > 0 needs periodic frames with stresses)")
    temporal_pairs: bool = setting(False, "add the temporal-pair loss (time-ordered data "
                                          "only)")
    w_temporal: float = setting(1.0, "temporal-pair loss weight")
    loss: str = setting("mse", "error function of energies and forces: mse, or huber "
                               "(quadratic below huber_delta, linear above: outlier frames "
                               "pull less)", choices=LOSSES)
    huber_delta: float = setting(0.01, "where the Huber loss turns linear (eV for total "
                                       "energies, eV/A for force components)")
    refit_scale: bool = setting(False, "fine-tuning: refit the per-element force scale to the "
                                       "new data (default: keep the pre-trained scale, so the "
                                       "pre-trained PES is not rescaled)")
    grad_clip: float | None = setting(None, "clip the gradient norm to this value before "
                                            "each step (default: no clipping)")
    divergence_retries: int = setting(0, "on a non-finite training loss, go back to the best "
                                         "validated model with a fresh Adam at lr_factor "
                                         "times the learning rate, at most this many times "
                                         "in a run (0: stop with an error at once)",
                                      role="free")
    ema_decay: float | None = setting(None, "validate and save an exponential moving average "
                                            "of the weights with this decay per step, e.g. "
                                            "0.99 (default: the weights themselves)")
    e0s: str | None = setting(None, "isolated-atom energies in eV fixing the per-element "
                                    "energy shift instead of a fit: 'H:-13.6,O:-2041.8' or a "
                                    "JSON file {symbol: eV}")
    valid_data: str | None = setting(None, "validation frames from their own file (no random "
                                           "split: e.g. a separate MD run, so correlated "
                                           "frames cannot leak)", role="input")
    test_data: str | None = setting(None, "test frames: the best model's errors on them go "
                                          "into summary.json", role="input")
    energy_key: str | None = setting(None, "extended XYZ / ASE trajectory: the energy labels "
                                           "are under this key (default: the first of ASE's "
                                           "and MACE's names found, e.g. energy, REF_energy)")
    forces_key: str | None = setting(None, "extended XYZ / ASE trajectory: the force labels "
                                           "are under this key (default: forces, REF_forces, "
                                           "...)")
    stress_key: str | None = setting(None, "extended XYZ / ASE trajectory: the stress labels "
                                           "(eV/A^3) are under this key, or a virial (eV) "
                                           "under virial/REF_virials (default: stress, "
                                           "REF_stress, ..., then virials)")
    # data split
    n_train: int | None = setting(None, "training frames (default: all not in validation)")
    n_val: int | None = setting(None, "validation frames (default: val_fraction of them)")
    val_fraction: float = setting(0.05, "validation fraction when n_val is not given")
    # bookkeeping
    explicit: list = setting(default_factory=list, cli=False, role="free")  # fields set by the user

    def __post_init__(self):
        super().__post_init__()
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if self.refit_scale and not self.init:
            raise ValueError("refit_scale refits a pre-trained model's force scale: it needs "
                             "a checkpoint to start from (--init)")
        if self.stage == "finetune" and not self.init:
            raise ValueError("the finetune stage starts from a pre-trained checkpoint: give "
                             "--init runs/pt/best.pt")
        if self.dtype not in DTYPE_NAMES:
            raise ValueError(f"dtype must be one of {DTYPE_NAMES}, got {self.dtype!r}")
        if self.max_time_s is not None and not self.max_time_s > 0:
            raise ValueError(f"max_time_s must be > 0 s, got {self.max_time_s}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be between 0 and 1, got {self.val_fraction}")
        if self.lr is None:
            self.lr = STAGE_LR[self.stage]
        for name in ("batch_size", "epochs", "features", "interactions", "basis"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("n_train", "n_val"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 when given, got {getattr(self, name)}")
        checks = {"cutoff": (self.cutoff > 0, "> 0 A"), "lr": (self.lr > 0, "> 0"),
                  "lr_factor": (0 < self.lr_factor < 1, "between 0 and 1"),
                  "lr_patience": (self.lr_patience >= 0, ">= 0 epochs"),
                  "min_lr_ratio": (0 < self.min_lr_ratio <= 1, "in (0, 1]"),
                  "plateau_epochs": (self.plateau_epochs is None or self.plateau_epochs >= 1,
                                     ">= 1 epoch"),
                  "plateau_improvement": (0 < self.plateau_improvement < 1,
                                          "between 0 and 1"),
                  "w_energy": (self.w_energy >= 0, ">= 0"),
                  "w_forces": (self.w_forces >= 0, ">= 0"),
                  "w_stress": (self.w_stress >= 0, ">= 0"),
                  "w_temporal": (self.w_temporal >= 0, ">= 0"),
                  "huber_delta": (self.huber_delta > 0, "> 0"),
                  "grad_clip": (self.grad_clip is None or self.grad_clip > 0, "> 0"),
                  "divergence_retries": (self.divergence_retries >= 0, ">= 0"),
                  "ema_decay": (self.ema_decay is None or 0 < self.ema_decay < 1,
                                "between 0 and 1")}
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.e0s is not None:
            self.e0_energies()   # a malformed value is refused now, not after the data
        for name, (ok, rule) in checks.items():
            if not ok or not math.isfinite(getattr(self, name) or 0.0):
                raise ValueError(f"{name} must be {rule}, got {getattr(self, name)}")
        if self.w_energy == 0 and self.w_forces == 0:
            raise ValueError("w_energy and w_forces are both 0: nothing to train on")

    def label_keys(self) -> dict:
        """``{energy_key: ..., forces_key: ..., stress_key: ...}`` for the frame readers."""
        return {name: getattr(self, name) for name in LABEL_KEY_FIELDS}

    def e0_energies(self) -> dict | None:
        """``{atomic number: eV}`` of ``e0s`` (None when not given)."""
        if self.e0s is None:
            return None
        from ase.data import atomic_numbers
        text = str(self.e0s).strip()
        if Path(text).is_file():
            import json
            try:
                table = json.loads(Path(text).read_text())
            except ValueError as err:
                raise ValueError(f"e0s file {text} is not JSON ({err})") from None
            if not isinstance(table, dict):
                raise ValueError(f"e0s file {text} must hold {{symbol: eV}}")
        else:
            table = {}
            for item in text.split(","):
                symbol, sep, value = item.partition(":")
                if not sep:
                    raise ValueError(f"e0s: {item!r} is not SYMBOL:eV (e.g. 'H:-13.6,O:-2041.8'"
                                     ", or a JSON file)")
                table[symbol.strip()] = value
        out = {}
        for symbol, value in table.items():
            if symbol not in atomic_numbers:
                raise ValueError(f"e0s: {symbol!r} is not an element symbol")
            try:
                out[atomic_numbers[symbol]] = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"e0s: the energy of {symbol} is not a number ({value!r})"
                                 ) from None
            if not math.isfinite(out[atomic_numbers[symbol]]):
                raise ValueError(f"e0s: the energy of {symbol} is not finite")
        return out

    @classmethod
    def from_sources(cls, file: str | None = None, args=None, **overrides) -> "TrainConfig":
        """Defaults < TOML file (table ``[train]``) < options in ``args`` < overrides
        (``None`` values are ignored)."""
        return from_sources(cls, file, "train", args, **overrides)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("explicit")
        return d

    @property
    def output_dir(self) -> Path:
        return Path(self.output)
