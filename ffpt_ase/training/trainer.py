"""Training stages (scratch, pretrain, finetune) with checkpoints that survive interrupts.

Output folder of a run (a :class:`~ffpt_ase.runfolder.RunFolder`)::

    run.json         the run's fingerprint: settings and data/initial-model digests
    config.json      resolved configuration, normalization, data metadata
    split.npz        train/validation frame indices (seeded; reused on resume)
    log.csv          one row per epoch: losses, energy/force MAE and RMSE, learning rate
    last.pt          model + optimizer + scheduler + history + the best model so far (+ the
                     weights' moving average with ``ema_decay``), after the last finished
                     epoch: the commit point of each epoch
    best.pt          the model with the lowest validation loss so far (rebuilt from last.pt
                     on resume if a crash came between the two writes)
    best_forces.pt   the model with the lowest validation force MAE so far (what the plateau
                     rule judges; the validation loss, an energy and force MSE, can be held
                     for hundreds of epochs by one badly predicted frame); likewise rebuilt
    summary.json     epochs, stop reason, final validation errors

(The command line also draws ``learning_curve.png`` from ``log.csv``.)

The pieces are separate: :class:`Trainer` receives the model, the data and its split, the
loss, optimizer, scheduler and a :class:`CheckpointHandler`; :func:`train` is the one-call
wrapper that builds them from a :class:`TrainConfig`.

Running the same command again resumes from ``last.pt``: finished epochs are never redone,
and each epoch's shuffling is seeded by (seed, epoch) so a resumed run reproduces the
uninterrupted one. A run with other data, another initial model or other settings (the
learning rate, loss weights, batch size, ...) is refused; ``epochs`` and ``max_time_s`` may
change (to extend a run); ``start_over=True`` moves the old run aside.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.frames import Frames, label_sources, open_npz
from ..data.graphs import batch_from_frames
from ..data.readers import read_frames
from ..model.potential import CheckpointError, Potential, load_checkpoint
from ..runfolder import RunFolder, file_digest
from ..progress import progress
from ..runtime import set_threads, torch_dtype, usable_device
from .config import TrainConfig
from .distributed import Distributed
from .losses import TrainingLoss
from .metrics import error_metrics, predict

log = logging.getLogger(__name__)

LOG_FIELDS = ["epoch", "time_s", "lr", "train_loss", "val_loss", "val_energy_mae",
              "val_energy_rmse", "val_energy_per_atom_mae", "val_forces_mae", "val_forces_rmse"]


@dataclass
class TrainingData:
    """Frames with their seeded split (indices) and, for the temporal-pair loss, the first
    frames of consecutive training pairs (t, t+1)."""

    frames: Frames
    train_idx: np.ndarray
    val_idx: np.ndarray
    pair_starts: np.ndarray | None = None
    validation: Frames | None = None   # frames of their own file (then val_idx is empty)
    test: Frames | None = None

    @property
    def validation_frames(self) -> Frames:
        return self.validation if self.validation is not None else self.frames[self.val_idx]


class CheckpointHandler:
    """The files of a training stage's :class:`~ffpt_ase.runfolder.RunFolder`: checkpoints
    and logs written atomically, checkpoints read back with :func:`load_checkpoint`
    (``weights_only=True``). Without a run folder (``run=None``: the other processes of a
    distributed run) it only reads ``folder``, and writing is left to rank 0."""

    def __init__(self, run: RunFolder | None, folder: Path | None = None):
        self.run = run
        self.folder = run.path if run is not None else Path(folder)

    @property
    def writes(self) -> bool:
        return self.run is not None

    def save(self, name: str, contents: dict) -> Path:
        if self.writes:
            with self.run.atomic(name) as tmp:
                torch.save(contents, tmp)
        return self.folder / name

    def load(self, name: str) -> dict | None:
        path = self.folder / name
        return load_checkpoint(path) if path.exists() else None

    def write_text(self, name: str, text: str) -> Path:
        return self.run.write_text(name, text) if self.writes else self.folder / name

    def close(self, *exc) -> None:
        if self.run is not None:
            self.run.__exit__(*exc)  # releases the run folder's lock


def check_training_frames(frames: Frames, what: str = "training data",
                          like: Frames | None = None, stress: bool = False) -> None:
    """Refuse data that mix label sources, lack labels or hold non-finite values; with
    ``like`` (the training frames), also validation or test frames of another label source
    or with elements the training frames lack; with ``stress`` (a stress loss weight),
    frames without stresses or not periodic in all directions."""
    sources = label_sources(frames.metadata)
    if len(sources) > 1:
        raise ValueError(f"the {what} mix label sources {sorted(sources)}; FFPT never "
                         f"mixes fidelities in one stage: train them as separate stages")
    if like is not None:
        theirs = label_sources(like.metadata)
        if sources != theirs:
            raise ValueError(f"the {what} are labelled by {sorted(sources)}, the training "
                             f"data by {sorted(theirs)}: one stage compares one fidelity")
        extra = sorted(set(int(z) for z in frames.elements) - set(int(z) for z in
                                                                  like.elements))
        if extra:
            from ase.data import chemical_symbols
            raise ValueError(f"the {what} contain elements the training data lack: "
                             f"{[chemical_symbols[z] for z in extra]}")
    if frames.energy is None or frames.forces is None:
        from ..data.frames import ENERGY_KEYS, FORCES_KEYS
        missing = " and ".join(k for k, v in (("energies", frames.energy),
                                               ("forces", frames.forces)) if v is None)
        raise ValueError(f"{what} need energies and forces; these have no {missing} "
                         f"(extended XYZ: looked for {', '.join(ENERGY_KEYS)} and "
                         f"{', '.join(FORCES_KEYS)})")
    if stress and (frames.stress is None or not frames.pbc.all()):
        from ..data.frames import STRESS_KEYS, VIRIAL_KEYS
        why = "are not periodic in all directions" if frames.stress is not None else \
            (f"have no stresses (extended XYZ: looked for {', '.join(STRESS_KEYS)}, then the "
             f"virials {', '.join(VIRIAL_KEYS)})")
        raise ValueError(f"w_stress > 0 trains on stresses, but the {what} {why}")
    bad = frames.nonfinite_frames()
    if len(bad):
        raise ValueError(f"{len(bad)} frames of the {what} have non-finite values (first: "
                         f"{bad[:5].tolist()}); clean the data first")


def build_model(cfg: TrainConfig, frames: Frames):
    """``(model, init_stage)``: a new :class:`Potential` for the data's elements, or the
    ``cfg.init`` checkpoint's (architecture and elements checked against the request)."""
    data_elements = [int(z) for z in frames.elements]
    if not cfg.init:
        return Potential(data_elements, cfg.features, cfg.interactions, cfg.basis,
                         cfg.cutoff), None
    ckpt = load_checkpoint(cfg.init)
    arch = ckpt["config"]
    mismatch = {k: (getattr(cfg, k2), arch[k]) for k2, k in
                (("features", "n_features"), ("interactions", "n_interactions"),
                 ("basis", "n_basis"), ("cutoff", "cutoff"))
                if k2 in cfg.explicit and getattr(cfg, k2) != arch[k]}
    if mismatch:
        raise CheckpointError(f"{cfg.init} has a different architecture than requested: "
                              + ", ".join(f"{k} requested {a}, checkpoint {b}"
                                          for k, (a, b) in mismatch.items()))
    missing = sorted(set(data_elements) - set(arch["elements"]))
    if missing:
        from ase.data import chemical_symbols
        raise CheckpointError(
            f"{cfg.init} was trained for elements "
            f"{[chemical_symbols[z] for z in arch['elements']]} but the data contain "
            f"{[chemical_symbols[z] for z in missing]}")
    return Potential.from_checkpoint(ckpt), ckpt.get("stage")


def split_frames(frames: Frames, cfg: TrainConfig, checkpoints: CheckpointHandler):
    """Seeded train/validation indices, saved as ``split.npz`` and reused on resume."""
    path = checkpoints.folder / "split.npz"
    if path.exists():
        with open_npz(path) as d:
            if int(d["n_frames"]) != len(frames):
                raise ValueError(f"{path} was made for {int(d['n_frames'])} frames, the data "
                                 f"have {len(frames)}; use --start-over")
            return d["train"], d["val"]
    n = len(frames)
    perm = np.random.default_rng(cfg.seed).permutation(n)
    if cfg.valid_data:   # validation frames come from their own file
        n_val = 0
    else:
        n_val = cfg.n_val if cfg.n_val is not None else max(1, int(round(cfg.val_fraction * n)))
    n_train = cfg.n_train if cfg.n_train is not None else n - n_val
    if n_val + n_train > n or n_train < 1 or (n_val < 1 and not cfg.valid_data):
        raise ValueError(f"cannot take {n_train} training + {n_val} validation frames from {n}")
    val, train = np.sort(perm[:n_val]), np.sort(perm[n_val:n_val + n_train])
    if not checkpoints.writes:
        raise RuntimeError(f"{path} is missing: rank 0 writes it before the others read it")
    with checkpoints.run.atomic("split.npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, train=train, val=val, n_frames=n, seed=cfg.seed)
    return train, val


def pair_starts(frames: Frames, train_idx: np.ndarray) -> np.ndarray:
    """First frames t of consecutive training pairs (t, t+1) (:meth:`Frames.consecutive_pairs`,
    both frames in the training split)."""
    in_train = np.zeros(len(frames), bool)
    in_train[train_idx] = True
    ok = frames.consecutive_pairs() & in_train[:-1] & in_train[1:]
    starts = np.nonzero(ok)[0]
    if len(starts) == 0:
        raise ValueError("no consecutive training-frame pairs (t, t+1) in the data")
    return starts


class WeightAverage:
    """Exponential moving average of a model's parameters, updated after every optimizer
    step: ``avg = decay * avg + (1 - decay) * weights``. Validation and the saved best model
    use it (:meth:`applied`); ``last.pt`` keeps it beside the raw weights for resuming."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = float(decay)
        self.average = {n: p.detach().clone() for n, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model) -> None:
        for n, p in model.named_parameters():
            self.average[n].mul_(self.decay).add_(p.detach(), alpha=1.0 - self.decay)

    @contextmanager
    def applied(self, model):
        params = dict(model.named_parameters())
        raw = {n: p.detach().clone() for n, p in params.items()}
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(self.average[n])
        try:
            yield model
        finally:
            with torch.no_grad():
                for n, p in params.items():
                    p.copy_(raw[n])

    def state_dict(self) -> dict:
        return {"decay": self.decay, "average": dict(self.average)}

    def load_state_dict(self, state: dict) -> None:
        if state is None or abs(float(state["decay"]) - self.decay) > 0:
            raise CheckpointError("the checkpoint's weight average does not match this run")
        for n, t in state["average"].items():
            self.average[n].copy_(t)



def _plateau_series(history) -> tuple:
    """``(key, values)``: what the plateau rule judges, the validation force MAE per epoch
    (the validation loss where a run has no forces)."""
    key = "val_forces_mae" if history[-1].get("val_forces_mae") is not None else "val_loss"
    return key, [row[key] for row in history]


def _window_bests(values, window: int) -> tuple:
    """``(best before the last window, best within it)`` of a series."""
    return min(values[:-window]), min(values[-window:])


def plateau_reached(history, window: int | None, improvement: float) -> str | None:
    """The plateau rule: the best validation force MAE (the validation loss where a run has
    no forces) of the last ``window`` epochs improved on the best before them by less than
    the fraction ``improvement``. Returns the stop reason, or None (also when ``window`` is
    None or fewer than ``window + 1`` epochs are done)."""
    if not window or len(history) <= window:
        return None
    key, values = _plateau_series(history)
    before, recent = _window_bests(values, window)
    if recent > (1.0 - improvement) * before:
        return (f"plateau: best {key} of the last {window} epochs ({recent:.4g}) improved on "
                f"the best before them ({before:.4g}) by less than {100 * improvement:g} %")
    return None


def earliest_plateau_stop(history, window: int | None, improvement: float) -> int | None:
    """The smallest epoch count at which :func:`plateau_reached` can hold if no later epoch
    improves on the errors so far (at most ``len(history) + window``): a lower bound on
    when a plateau-ruled run stops, which is what its progress bar counts down to. None
    without a window or before the first epoch."""
    if not window or not history:
        return None
    _, values = _plateau_series(history)
    for epochs in range(max(len(values), window) + 1, len(values) + window + 1):
        # the epochs still to come count as no improvement at all
        before, recent = _window_bests(values + [math.inf] * (epochs - len(values)), window)
        if recent > (1.0 - improvement) * before:
            return epochs
    return len(values) + window


def _best_forces_mae(history) -> float:
    """The lowest validation force MAE of a history (inf without one): what an epoch must
    beat to be written as ``best_forces.pt``."""
    return min((row["val_forces_mae"] for row in history
                if row.get("val_forces_mae") is not None), default=math.inf)


class Trainer:
    """The training loop of one stage, from pieces made by the caller (see :func:`train`).

    ``cfg`` supplies the loop's settings (epochs, batch size, seed, time budget, the
    learning-rate floor, stage name, dtype); the optimizer and scheduler are the caller's
    (:func:`make_optimizer` gives the paper's Adam + ReduceLROnPlateau).
    """

    def __init__(self, cfg: TrainConfig, model: Potential, data: TrainingData,
                 loss: TrainingLoss, optimizer, scheduler, checkpoints: CheckpointHandler,
                 init_stage: str | None = None, dist: Distributed | None = None):
        self.cfg, self.model, self.data, self.loss = cfg, model, data, loss
        self.opt, self.sched, self.checkpoints = optimizer, scheduler, checkpoints
        self.dist = dist or Distributed()
        self.out = checkpoints.folder
        self.dtype = torch_dtype(cfg.dtype)
        self.device = next(model.parameters()).device
        self.stress = loss.w_stress > 0   # stresses are predicted and trained
        self.frames = data.frames
        self.data = data
        self.train_idx, self.val_idx, self.pairs = data.train_idx, data.val_idx, data.pair_starts
        self.init_stage = init_stage
        self.ema = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay else None

    def __enter__(self) -> "Trainer":
        return self

    def __exit__(self, *exc):
        self.checkpoints.close(*exc)
        self.dist.close()
        return False

    # ------------------------------------------------------------------ running
    def run(self) -> dict:
        cfg, opt, sched = self.cfg, self.opt, self.sched
        start_epoch, best, history = self._resume()
        if start_epoch == 0:
            norm = self._start_normalization()
            log.info("normalization for the %s stage: %s", cfg.stage, norm)
            # the architecture is the model's (a fine-tuning run's comes from its ``init``,
            # whatever the unset size settings say)
            arch = self.model.config
            size = {"features": arch["n_features"], "interactions": arch["n_interactions"],
                    "basis": arch["n_basis"], "cutoff": arch["cutoff"]}
            self.checkpoints.write_text("config.json", json.dumps(
                {**cfg.to_dict(), **size, "init_stage": self.init_stage, "normalization": norm,
                 "world_size": self.dist.world_size, "data_metadata": self.frames.metadata},
                indent=2, default=str))
        # every process continues from rank 0's weights (GPU sums are not bit-reproducible)
        self.dist.broadcast_model(self.model)
        t_start = time.perf_counter() - (history[-1]["time_s"] if history else 0.0)
        stop_reason = "max epochs"
        # a plateau-ruled run counts down to the earliest epoch its rule can stop it (the
        # ETA is then a lower bound, and says so); otherwise to the epoch cap or time budget
        plateau_eta = bool(cfg.plateau_epochs) and not cfg.max_time_s
        bar = progress(total=cfg.epochs, initial=start_epoch, unit="epoch",
                       desc=f"{cfg.stage}" + (" (ETA to the earliest plateau stop)"
                                              if plateau_eta else ""),
                       disable=not self.dist.is_main)
        if plateau_eta and history:
            bar.total = self._earliest_stop(history)
        try:
            epoch = start_epoch - 1
            while epoch + 1 < cfg.epochs:
                epoch += 1
                reason = self._stop_reason(history)  # (a resumed run may have met one)
                if reason:
                    stop_reason = reason
                    break
                try:   # (nothing of the epoch is saved before its validation)
                    train_loss = self._train_epoch(epoch)
                    val = self._validate()
                except FloatingPointError as err:   # (raises when no retry is left)
                    epoch = self._roll_back(epoch, err, history) - 1
                    best = self.best["best_val_loss"]
                    bar.n = epoch + 1    # the bar counts the epochs kept
                    continue
                sched.step(val["loss"])
                # rank 0's clock for all, so that a time budget stops every process together
                elapsed = self.dist.broadcast(round(time.perf_counter() - t_start, 2))
                row = {"epoch": epoch + 1, "time_s": elapsed,
                       "lr": opt.param_groups[0]["lr"], "train_loss": train_loss,
                       "val_loss": val["loss"], "val_energy_mae": val.get("energy_mae"),
                       "val_energy_rmse": val.get("energy_rmse"),
                       "val_energy_per_atom_mae": val.get("energy_per_atom_mae"),
                       "val_forces_mae": val.get("forces_mae"),
                       "val_forces_rmse": val.get("forces_rmse")}
                if self.stress:
                    row.update(val_stress_mae=val.get("stress_mae"),
                               val_stress_rmse=val.get("stress_rmse"))
                history.append(row)
                if val["loss"] < best:
                    best = val["loss"]
                    with self._averaged():   # the saved model is the validated one
                        self.best = self._contents(epoch + 1, best, history,
                                                   training_state=False)
                if val.get("forces_mae") is not None \
                        and val["forces_mae"] < self.best_forces_mae:
                    self.best_forces_mae = val["forces_mae"]
                    with self._averaged():
                        self.best_forces = self._contents(epoch + 1, best, history,
                                                          training_state=False)
                # last.pt (holding the best model too) is the commit point; best.pt and
                # log.csv follow from it and are rebuilt from it on resume
                self.checkpoints.save("last.pt", self._contents(epoch + 1, best, history))
                if self.best["epoch"] == epoch + 1:
                    self.checkpoints.save("best.pt", self.best)
                if self.best_forces is not None and self.best_forces["epoch"] == epoch + 1:
                    self.checkpoints.save("best_forces.pt", self.best_forces)
                self._write_log(history)
                if cfg.max_time_s:  # a time-budgeted run: the ETA is the budget's, not epochs'
                    per_epoch = row["time_s"] / (epoch + 1)
                    bar.total = min(cfg.epochs, max(epoch + 1, int(cfg.max_time_s / per_epoch)))
                elif plateau_eta:
                    bar.total = self._earliest_stop(history)
                # refresh=False: the bar's own rate limit decides when a line is printed
                bar.set_postfix(val_F_MAE=f"{row['val_forces_mae']:.4f}",
                                val_E_MAE=f"{row['val_energy_mae']:.4f}", lr=f"{row['lr']:.1e}",
                                refresh=False)
                bar.update(1)
            else:
                stop_reason = self._stop_reason(history) or stop_reason
        finally:
            bar.close()
        summary = {"stage": cfg.stage, "epochs": len(history), "stop_reason": stop_reason,
                   "best_val_loss": best, "output": str(self.out),
                   "best_forces_epoch": None if self.best_forces is None
                   else int(self.best_forces["epoch"]),
                   "final": history[-1] if history else None,
                   "divergences": list(self.divergences)}
        if self.data.test is not None and self.best is not None:
            summary["test"] = {"frames": cfg.test_data, "model": "best.pt",
                               **self._test_errors()}
        self.checkpoints.write_text("summary.json", json.dumps(summary, indent=2, default=str))
        return summary

    def _roll_back(self, epoch: int, err: FloatingPointError, history: list) -> int:
        """A non-finite training or validation loss in ``epoch`` (0-based): go back to the
        best validated model (the weights of the last epoch may already overflow on some
        frames: the combustion scratch arm's predicted 1e119 eV for a 0.55 A contact one
        epoch before its loss did), with a fresh Adam at ``lr_factor`` times the learning
        rate, drop the epochs after the best one from the history, and record the event.
        Returns the number of epochs now done. Re-raises ``err`` when no retry is left, when
        there is no validated model yet, or when the lowered rate would be at the floor."""
        cfg = self.cfg
        lr = self.opt.param_groups[0]["lr"]
        new_lr = lr * cfg.lr_factor
        if len(self.divergences) >= cfg.divergence_retries or self.best is None \
                or self._at_lr_floor(new_lr):
            raise err
        back_to = int(self.best["epoch"])
        self.model.load_state_dict(self.best["model_state"])
        self.opt.state.clear()                      # fresh moments for the old weights
        for group in self.opt.param_groups:
            group["lr"] = new_lr
        # the scheduler reads the rate from the optimizer at its next step; its count of
        # epochs without improvement restarts, since the best epoch is the current one
        if hasattr(self.sched, "num_bad_epochs"):
            self.sched.num_bad_epochs = 0
        if self.ema is not None:
            self.ema = WeightAverage(self.model, cfg.ema_decay)
        self.dist.broadcast_model(self.model)
        self.divergences.append({"epoch": epoch + 1, "back_to_epoch": back_to,
                                 "discarded_epochs": epoch - back_to,
                                 "lr_before": lr, "lr_after": new_lr, "error": str(err)})
        log.warning("%s, epoch %d: %s; back to the best model (epoch %d, %d later epochs "
                    "discarded) with a fresh Adam, learning rate %.3g -> %.3g (retry %d of %d)",
                    cfg.stage, epoch + 1, err, back_to, epoch - back_to, lr, new_lr,
                    len(self.divergences), cfg.divergence_retries)
        del history[back_to:]
        if self.best_forces is not None and self.best_forces["epoch"] > back_to:
            # that epoch is discarded with the others: the returned-to model stands in
            self.best_forces = self.best
            self.checkpoints.save("best_forces.pt", self.best_forces)
        # the mark a later epoch must beat, derived as a resumed run derives it
        self.best_forces_mae = _best_forces_mae(history)
        # the commit point holds the returned-to state: a run killed now resumes from it
        self.checkpoints.save("last.pt", self._contents(back_to, self.best["best_val_loss"],
                                                        history))
        self._write_log(history)
        return back_to

    def _at_lr_floor(self, lr: float) -> bool:
        """Whether ``lr`` is at the paper's floor (``min_lr_ratio`` of the start rate)."""
        return lr <= self.cfg.min_lr_ratio * self.cfg.lr * (1 + 1e-9)

    def _earliest_stop(self, history) -> int:
        """The progress bar's total for a plateau-ruled run: the earliest epoch its rule can
        stop it, given the history so far (capped by ``epochs``)."""
        return min(self.cfg.epochs, earliest_plateau_stop(
            history, self.cfg.plateau_epochs, self.cfg.plateau_improvement))

    def _stop_reason(self, history) -> str | None:
        """Why training should stop now, given the epochs done: the learning rate at its
        floor, the validation error on a plateau, or the wall-time budget spent; None to go
        on."""
        if not history:
            return None
        if self._at_lr_floor(self.opt.param_groups[0]["lr"]):
            return f"learning rate reached {self.cfg.min_lr_ratio:g} of its start"
        plateau = plateau_reached(history, self.cfg.plateau_epochs, self.cfg.plateau_improvement)
        if plateau:
            return plateau
        if self.cfg.max_time_s and history[-1]["time_s"] >= self.cfg.max_time_s:
            return "max wall time"
        return None

    def _start_normalization(self) -> dict:
        """From scratch: per-element shift and scale fitted on the training frames. From a
        checkpoint (fine-tuning): scale and network kept, shift moved by the residual of the
        loaded model on (up to 2,000) training frames, so the pre-trained PES is not
        rescaled and only the new energy zero is absorbed; with ``refit_scale`` the scale is
        fitted to the new data first."""
        train = self.frames[self.train_idx]
        e0s = self.cfg.e0_energies()
        if e0s is not None:   # the user's isolated-atom energies replace the fitted shifts
            norm = self.model.fit_normalization(train) if not self.cfg.init else {}
            norm.update(self.model.set_shift(e0s))
            return norm
        if not self.cfg.init:
            return self.model.fit_normalization(train)
        rescaled = self.model.fit_normalization(train)["scale"] if self.cfg.refit_scale \
            else None   # (its fitted shifts are then moved by the residual, as always)
        sub = train[np.sort(np.random.default_rng(self.cfg.seed).permutation(len(train))[:2000])]
        e, _ = predict(self.model, sub, batch_size=max(self.cfg.batch_size, 64),
                       dtype=self.dtype, forces=False)
        norm = self.model.refit_shift(sub, e)
        if rescaled is not None:
            norm["scale (refitted)"] = norm.pop("scale (kept)")
        # evenly spread over the (ordered) sample: a data set sorted by species or file
        # would otherwise be judged by its first kind of frame only (e.g. free atoms)
        spread = np.unique(np.linspace(0, len(sub) - 1, min(len(sub), 64)).astype(int))
        norm["start_check"] = self._start_check(sub[spread])
        return norm

    def _start_check(self, frames) -> dict:
        """How far the loaded model is from the new data before any update: force RMS of its
        predictions vs the reference's. A ratio far from 1 means the pre-training data did
        not cover these environments (e.g. monomers only, fine-tuned on a liquid); the
        network then starts by unlearning, and a warning says so."""
        _, f = predict(self.model, frames, batch_size=max(self.cfg.batch_size, 64),
                       dtype=self.dtype)
        real = frames.numbers_per_frame > 0
        pred = float(np.sqrt(np.mean(f[real] ** 2)))
        ref = float(np.sqrt(np.mean(frames.forces[real] ** 2)))
        ratio = pred / max(ref, 1e-12)
        if ref > 0 and not 0.1 <= ratio <= 10.0:
            log.warning("the starting model predicts forces with RMS %.3g eV/A on the %s data, "
                        "whose forces have RMS %.3g eV/A (ratio %.3g): its pre-training did not "
                        "cover these environments, and fine-tuning starts far from them",
                        pred, self.cfg.stage, ref, ratio)
        return {"predicted_force_rms": pred, "reference_force_rms": ref, "ratio": ratio}

    def _batches(self, epoch):
        """``(frames, pairs, counts)`` of each step: this process's share of the global batch
        (all of it in a plain run), the temporal pairs within it, and the global batch's
        counts of frames, force components and pairs that the loss divides by."""
        rng = np.random.default_rng([self.cfg.seed, epoch])
        bs = self.cfg.batch_size
        n_atoms = self.frames.n_atoms
        if self.pairs is None:
            order = rng.permutation(self.train_idx)
            for s in range(0, len(order), bs):
                idx = order[s:s + bs]
                counts = {"frames": len(idx), "components": 3 * int(n_atoms[idx].sum())}
                yield self.dist.share(idx), None, counts
        else:
            order = rng.permutation(self.pairs)
            half = max(1, bs // 2)
            for s in range(0, len(order), half):
                t0 = order[s:s + half]
                both = np.concatenate([t0, t0 + 1])
                counts = {"frames": len(both), "components": 3 * int(n_atoms[both].sum()),
                          "pairs": len(t0)}
                t0 = self.dist.share(t0)
                p = len(t0)
                yield (np.concatenate([t0, t0 + 1]),
                       torch.stack([torch.arange(p), torch.arange(p) + p], dim=1
                                   ).to(self.device), counts)

    def _train_epoch(self, epoch) -> float:
        model, opt = self.model, self.opt
        model.train()
        total, n = 0.0, 0
        for idx, pairs, counts in self._batches(epoch):
            opt.zero_grad(set_to_none=True)
            value = 0.0
            if len(idx):   # a share can be empty at the end of an epoch
                batch = batch_from_frames(self.frames, idx, model.elements, model.cutoff,
                                          device=self.device).to(dtype=self.dtype)
                pred = model(batch, forces=True, stress=self.stress)
                loss = self.loss(pred, batch, pairs, counts)
                loss.backward()
                value = loss.item()
            self.dist.sum_gradients(model)   # the global batch's gradient on every process
            value = self.dist.sum(value)
            if self.cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), self.cfg.grad_clip)
            opt.step()
            if self.ema is not None:
                self.ema.update(model)
            if not math.isfinite(value):
                raise FloatingPointError(f"non-finite training loss in epoch {epoch + 1} (the "
                                         f"model diverged: try --grad-clip or a lower --lr)")
            total += value * counts["frames"]
            n += counts["frames"]
        return total / max(n, 1)

    def _averaged(self):
        """The model's weights replaced by their moving average (when the run keeps one)
        for the duration of a ``with`` block."""
        return self.ema.applied(self.model) if self.ema is not None else nullcontext()

    def _predict_shared(self, frames):
        """Energies, forces and stresses (None unless trained) of ``frames``, each process
        predicting its share and all of them gathering the whole (a plain run predicts
        everything itself)."""
        mine = self.dist.share(np.arange(len(frames)))
        if len(mine):
            out = predict(self.model, frames[mine], batch_size=max(self.cfg.batch_size, 64),
                          dtype=self.dtype, stress=self.stress)
        else:
            out = (np.zeros(0), np.zeros((0,) + frames.positions.shape[1:]),
                   np.zeros((0, 3, 3)))[:3 if self.stress else 2]
        parts = self.dist.all_gather(out)
        joined = [np.concatenate([p[k] for p in parts]) for k in range(len(out))]
        return joined[0], joined[1], (joined[2] if self.stress else None)

    def _validate(self) -> dict:
        val = self.data.validation_frames
        with self._averaged():
            e, f, s = self._predict_shared(val)
        metrics = error_metrics(val, e, f, s)
        metrics["loss"] = self.loss.validation_loss(val, e, f, s)
        if not math.isfinite(metrics["loss"]):
            raise FloatingPointError(f"non-finite validation loss ({metrics['loss']}) in the "
                                     f"{self.cfg.stage} stage: the model diverged")
        return metrics

    def _test_errors(self) -> dict:
        """Errors (eV, eV/A) of the best model on the test frames."""
        best = Potential.from_checkpoint(self.best).to(self.device, self.dtype)
        test = self.data.test
        with_stress = test.stress is not None and bool(test.pbc.all())
        out = predict(best, test, batch_size=max(self.cfg.batch_size, 64), dtype=self.dtype,
                      stress=with_stress)
        return error_metrics(test, *out)

    # ------------------------------------------------------------------ persistence
    def _contents(self, epoch, best, history, training_state=True) -> dict:
        """What a checkpoint holds: the model and history; with ``training_state`` (for
        ``last.pt``) also the optimizer, the scheduler and the best model so far."""
        extra = {}
        if training_state:
            extra = {"optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                     "best": self.best, "best_forces": self.best_forces}
            if self.ema is not None:
                extra["ema"] = self.ema.state_dict()
        return self.model.checkpoint(
            stage=self.cfg.stage, epoch=epoch, best_val_loss=best, history=list(history),
            train_config=self.cfg.to_dict(), init_stage=self.init_stage,
            data_source=self.frames.metadata.get("source", self.cfg.data),
            divergences=list(self.divergences), **extra)

    def _resume(self):
        ckpt = self.checkpoints.load("last.pt")
        self.divergences = []   # non-finite epochs rolled back (see _roll_back)
        self.best_forces, self.best_forces_mae = None, math.inf
        if ckpt is None:
            self.best = None
            return 0, float("inf"), []
        path = self.out / "last.pt"
        if ckpt.get("stage") != self.cfg.stage or ckpt["config"] != self.model.config \
                or "best" not in ckpt:
            raise CheckpointError(f"{path} does not belong to this run (stage "
                                  f"{ckpt.get('stage')}, model {ckpt['config']}); use "
                                  f"--start-over")
        self.model.load_state_dict(ckpt["model_state"])
        if self.ema is not None:
            self.ema.load_state_dict(ckpt.get("ema"))
        self.opt.load_state_dict(ckpt["optimizer"])
        self.sched.load_state_dict(ckpt["scheduler"])
        self.best = ckpt["best"]
        self.divergences = list(ckpt.get("divergences", []))
        history = list(ckpt["history"])
        # a run from before best_forces.pt was kept has none: its best validation force MAE
        # so far is the mark a later epoch must beat to write one
        self.best_forces = ckpt.get("best_forces")
        self.best_forces_mae = _best_forces_mae(history)
        # a crash after last.pt may have left best.pt, best_forces.pt and log.csv one epoch
        # behind
        for name, contents in (("best.pt", self.best), ("best_forces.pt", self.best_forces)):
            if contents is None:
                continue
            on_disk = self.checkpoints.load(name)
            if on_disk is None or on_disk.get("epoch") != contents["epoch"]:
                self.checkpoints.save(name, contents)
                log.info("rebuilt %s (epoch %d) from last.pt", self.out / name,
                         contents["epoch"])
        self._write_log(history)
        log.info("resuming %s from %s after epoch %d", self.cfg.stage, path, ckpt["epoch"])
        return int(ckpt["epoch"]), float(ckpt["best_val_loss"]), history

    def _write_log(self, history):
        import io
        buffer = io.StringIO()
        fields = LOG_FIELDS + (["val_stress_mae", "val_stress_rmse"] if self.stress else [])
        writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(history)
        self.checkpoints.write_text("log.csv", buffer.getvalue())


def make_optimizer(model: Potential, cfg: TrainConfig):
    """The paper's optimizer and schedule: Adam at ``cfg.lr``, ReduceLROnPlateau (factor
    ``lr_factor``, patience ``lr_patience`` epochs) down to ``min_lr_ratio`` of the start."""
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="min", factor=cfg.lr_factor, patience=cfg.lr_patience,
        min_lr=cfg.min_lr_ratio * cfg.lr)
    return opt, sched


#: the run folder's :meth:`~ffpt_ase.data.frames.Frames.sketch` of its training data
DATA_SKETCH = "data_sketch.npz"
#: the largest difference (relative to the values' size, :func:`sketch_difference`) by which
#: training data rebuilt on another machine may differ from a run's and still resume it:
#: rounding (another CPU's vectorised exp or erfc) moves labels by about 1e-15 of their
#: size; another seed, sigma or teacher by far more than 1e-8
REGENERATED_RTOL = 1e-8


def same_data_check(frames: Frames):
    """The check of a run folder whose training data came back with another digest
    (:class:`~ffpt_ase.runfolder.RunFolder`'s ``regenerated``): the same data rebuilt, when
    their sketch is within :data:`REGENERATED_RTOL` of the one the run kept."""
    from ..data.frames import sketch_difference
    from ..runfolder import RunFolderError

    def check(folder: Path) -> str:
        path = Path(folder) / DATA_SKETCH
        if not path.exists():
            raise RunFolderError(f"the run keeps no {DATA_SKETCH} to tell data rebuilt on "
                                 f"another machine from other data: it was started before "
                                 f"sketches were kept")
        with np.load(path) as z:
            diff = sketch_difference(dict(z), frames)
        if isinstance(diff, str):
            raise RunFolderError(f"other training data: {diff}")
        if diff > REGENERATED_RTOL:
            raise RunFolderError(f"other training data: values differ by up to {diff:.1e} of "
                                 f"their size, more than rounding ({REGENERATED_RTOL:g})")
        return (f"the training data came back with another digest (rebuilt, e.g. on another "
                f"machine) and equal the run's within {diff:.1e} of their size (rounding; up "
                f"to {REGENERATED_RTOL:g} accepted): resumed")

    return check


def training_run_folder(config: TrainConfig, frames: Frames,
                        start_over: bool = False) -> RunFolder:
    """The stage's :class:`~ffpt_ase.runfolder.RunFolder` (not yet opened): fingerprinted by
    the settings that decide the result, the data's content and the initial model file.
    Training data rebuilt with another digest resume the run when they equal its data up to
    rounding (:func:`same_data_check`)."""
    roles = config.by_role()
    inputs = {"data": frames.fingerprint()}
    for name in ("init", "valid_data", "test_data"):
        if getattr(config, name):
            inputs[name] = file_digest(getattr(config, name))
    return RunFolder(config.output_dir, "train", settings=roles["setting"], inputs=inputs,
                     free={**roles["free"], "data": config.data, "init": config.init,
                           "valid_data": config.valid_data, "test_data": config.test_data},
                     start_over=start_over, regenerated={"data": same_data_check(frames)})


def _open_training_run(config: TrainConfig, frames: Frames, start_over: bool) -> RunFolder:
    """Open the stage's run folder; keep its data sketch (a run started before sketches
    were kept gets one at its first resume on the same data) and log what was accepted."""
    run = training_run_folder(config, frames, start_over).__enter__()
    for note in run.notes:
        log.warning("%s: %s", run.path, note)
    if not (run.path / DATA_SKETCH).exists():
        with run.atomic(DATA_SKETCH) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **frames.sketch())
    return run


def prepare(config: TrainConfig, frames: Frames | None = None,
            start_over: bool = False) -> Trainer:
    """The :class:`Trainer` of a configuration: reads and checks the data, seeds the weight
    initialisation, builds the model, opens (locks) the run folder, makes the split, loss,
    optimizer, scheduler and checkpoints. Use it as a context manager (``with prepare(cfg)
    as trainer: trainer.run()``) so the run folder is closed at the end."""
    set_threads(config.threads)
    dist = Distributed.from_environment(config.device)
    try:
        return _prepare(config, frames, start_over, dist)
    except BaseException:
        dist.close()
        raise


def _prepare(config: TrainConfig, frames, start_over: bool, dist: Distributed) -> Trainer:
    device = usable_device(dist.device_name(config.device))
    if frames is None and not config.data:
        raise ValueError("give the training data (--data FILE, or data = ... in the TOML "
                         "file)")
    keys = config.label_keys()
    frames = frames if frames is not None else read_frames(config.data, **keys)
    stress = config.w_stress > 0
    check_training_frames(frames, stress=stress)
    extra = {}
    for name, what in (("valid_data", "validation data"), ("test_data", "test data")):
        if getattr(config, name):
            extra[name] = read_frames(getattr(config, name), **keys)
            check_training_frames(extra[name], what, like=frames, stress=stress)
    torch.manual_seed(config.seed)  # weight initialisation is part of the seeded run
    model, init_stage = build_model(config, frames)
    model = model.to(device=device, dtype=torch_dtype(config.dtype))
    # rank 0 (the only process of a plain run) opens the run folder and writes the split;
    # the others read them once it has, or stop with its error
    run, error = None, None
    if dist.is_main:
        try:
            run = _open_training_run(config, frames, start_over)
            split_frames(frames, config, CheckpointHandler(run))
        except BaseException as err:
            if run is not None:
                run.__exit__(None, None, None)
            if not dist.active:
                raise
            error = err
    dist.agree(error)
    checkpoints = CheckpointHandler(run, config.output_dir)
    try:
        train_idx, val_idx = split_frames(frames, config, checkpoints)
        pairs = pair_starts(frames, train_idx) if config.temporal_pairs else None
        optimizer, scheduler = make_optimizer(model, config)
    except BaseException:
        checkpoints.close(None, None, None)
        raise
    data = TrainingData(frames, train_idx, val_idx, pairs, extra.get("valid_data"),
                        extra.get("test_data"))
    return Trainer(config, model, data,
                   TrainingLoss(config.w_energy, config.w_forces, config.w_temporal,
                                config.loss, config.huber_delta, config.w_stress),
                   optimizer, scheduler, checkpoints, init_stage, dist)


def train(config: TrainConfig, frames: Frames | None = None, start_over: bool = False) -> dict:
    """Run (or resume) a training stage; returns the summary (also in ``summary.json``).
    ``start_over`` moves an earlier run in the output folder aside first."""
    with prepare(config, frames, start_over) as trainer:
        return trainer.run()
