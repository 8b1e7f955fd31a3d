"""Observers of an MD run: what the drivers call every ``check_interval`` steps.

An observer looks at the current frame and returns events (JSON-able dictionaries with at
least ``type``); the driver writes them to ``events.jsonl``, stops the run on the first one
when asked (``stop_on_event``), keeps the observer's counters across restarts through
:meth:`Observer.state_dict` / :meth:`Observer.load_state_dict`, and merges
:meth:`Observer.summary` into the run's summary. Applications bring their own observers (the
hydrogen-combustion monitor of unphysical species is one); the drivers know none of them.
"""

from __future__ import annotations

import logging

import numpy as np
from ase import Atoms

log = logging.getLogger(__name__)


class Observer:
    """Base class: override :meth:`observe` and whichever of the others apply."""

    name = "observer"

    def observe(self, atoms: Atoms, step: int, time_ps: float) -> list:
        """Events of this frame (a list of dicts, empty when there is nothing to report)."""
        return []

    def summary(self) -> dict:
        """Numbers for the run's summary.json."""
        return {}

    def progress_fields(self) -> dict:
        """Short values for the progress bar."""
        return {}

    def state_dict(self) -> dict:
        """Counters that must survive a restart."""
        return {}

    @classmethod
    def merge(cls, observers) -> dict:
        """One summary of several walkers' observers of this kind (default: each key's
        values over the walkers, as a list)."""
        parts = [o.summary() for o in observers]
        return {k: [p[k] for p in parts] for k in parts[0]} if parts else {}

    def load_state_dict(self, state: dict) -> None:
        pass


class TemperatureMonitor(Observer):
    """Kinetic temperature (K) at every check, averaged over windows of ``window_ps``; warns
    once when a window's mean exceeds ``limit`` times the target (in metadynamics: the hills
    heat the system faster than the thermostat cools it; raise the friction)."""

    name = "temperature"

    def __init__(self, target_K: float, window_ps: float = 1.0, limit: float = 1.5):
        self.target, self.window_ps, self.limit = target_K, window_ps, limit
        self.window_means, self._current, self._window = [], [], 0
        self._span = [0.0, 0.0]   # first and last time (ps) of the current window
        self.warned = False

    def observe(self, atoms: Atoms, step: int, time_ps: float) -> list:
        self.add(atoms, time_ps)
        return []

    def add(self, atoms: Atoms, time_ps: float) -> None:
        window = int(time_ps // self.window_ps)
        if window != self._window and self._current:
            self._close()
        if not self._current:
            self._span[0] = time_ps
        self._window = window
        self._span[1] = time_ps
        self._current.append(atoms.get_temperature())

    def _close(self):
        mean = float(np.mean(self._current))
        self.window_means.append(round(mean, 1))
        self._current = []
        if mean > self.limit * self.target and not self.warned:
            self.warned = True
            log.warning("the kinetic temperature averaged %.0f K over a %.1f ps window, %.1f "
                        "times the target %.0f K: the system heats faster than the thermostat "
                        "cools it (raise --friction)", mean, self.window_ps,
                        mean / self.target, self.target)

    def summary(self) -> dict:
        """Window means; a trailing window shorter than half ``window_ps`` (the last step's
        check, say) is not a window mean and is left out."""
        if self._current and self._span[1] - self._span[0] >= 0.5 * self.window_ps:
            self._close()
        means = self.window_means
        return {"temperature_target_K": self.target,
                "temperature_window_means_K": means,
                "temperature_max_window_mean_K": max(means) if means else None,
                "overheated": bool(means and max(means) > self.limit * self.target)}

    def progress_fields(self) -> dict:
        return {"T": f"{self.last:.0f}K"}

    def state_dict(self) -> dict:
        """The closed windows' means, the open window's samples and the warning flag: a
        resumed run reports every window since its start, not since the restart."""
        return {"window_means": list(self.window_means), "current": list(self._current),
                "window": self._window, "span": list(self._span), "warned": self.warned}

    def load_state_dict(self, state: dict) -> None:
        self.window_means = list(state.get("window_means", []))
        self._current = [float(t) for t in state.get("current", [])]
        self._window = int(state.get("window", 0))
        self._span = [float(t) for t in state.get("span", [0.0, 0.0])]
        self.warned = bool(state.get("warned", False))

    @classmethod
    def merge(cls, observers) -> dict:
        parts = [o.summary() for o in observers]
        highest = [p["temperature_max_window_mean_K"] for p in parts
                   if p["temperature_max_window_mean_K"] is not None]
        return {"temperature_target_K": parts[0]["temperature_target_K"],
                "temperature_window_means_K": [p["temperature_window_means_K"] for p in parts],
                "temperature_max_window_mean_K": max(highest) if highest else None,
                "overheated": any(p["overheated"] for p in parts)}

    @property
    def last(self) -> float:
        return float(np.mean(self._current)) if self._current else float("nan")


def merge_summaries(walker_observers) -> dict:
    """The summary of several walkers' observers (``walker_observers[k]``: walker k's list,
    the same kinds in the same order), each kind merged by its :meth:`Observer.merge`."""
    out = {}
    for group in zip(*walker_observers):
        out.update(type(group[0]).merge(group))
    return out
