"""Metadynamics of a hydrogen-combustion channel: the generic driver with the channel's
shipped deck, its reactant complex as the start, and a monitor of unphysical species.

Unphysical events are checked every ``check_interval`` steps: two atoms closer than half
the sum of their covalent radii, or a molecular fragment that is neither a reactant nor a
product of the channel nor the complex of all atoms (e.g. O + OH from HO2 in channel 09),
with bonds at 1.25 and still at 1.6 times the covalent radii (a bond stretched between the
two is breaking, not broken: :meth:`Channel.classify`). They are reported, and stop the run only if asked
(``stop_on_event``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from ase import Atoms

from ...settings import setting
from ...forcefields.topology import colliding_pairs, fragment_formulas_from_distances
from ...simulate.metad import MetadConfig, metad_height_kjmol, read_start, run_metadynamics
from ...simulate.observers import Observer
from .channels import get_channel, reactant_complex
from .decks import HEIGHT_KJMOL, shipped_deck

log = logging.getLogger(__name__)


class UnphysicalMonitor(Observer):
    """Flags frames the channel's chemistry calls unphysical (:meth:`Channel.classify`:
    colliding atoms, or a fragment that is no reactant, product or the whole complex)."""

    name = "unphysical"

    def __init__(self, channel):
        self.channel = channel
        self.checked = 0
        self.flagged = 0

    def check(self, atoms: Atoms, step: int) -> list:
        """The frame's events (atoms too close, species not allowed); counts the frame."""
        d = atoms.get_all_distances()
        events = []
        if self.channel.classify(d[None])[0] == "unphysical":
            for i, j in np.argwhere(colliding_pairs(atoms.numbers, d)[0]):
                events.append({"step": step, "type": "atoms_too_close",
                               "atoms": [int(i), int(j)], "distance_A": round(float(d[i, j]), 4)})
            formulas = list(fragment_formulas_from_distances(atoms.numbers, d[None])[0])
            bad = sorted(f for f in formulas if f not in self.channel.allowed_species)
            if bad:
                events.append({"step": step, "type": "unphysical_species",
                               "fragments": formulas, "not_allowed": bad})
        self.checked += 1
        self.flagged += bool(events)
        return events

    def observe(self, atoms: Atoms, step: int, time_ps: float) -> list:
        return self.check(atoms, step)

    @property
    def fraction_flagged(self) -> float:
        return self.flagged / self.checked if self.checked else 0.0

    def summary(self) -> dict:
        return {"unphysical_fraction": self.fraction_flagged, "checked_frames": self.checked}

    def progress_fields(self) -> dict:
        return {"unphysical": f"{self.fraction_flagged:.3f}"}

    def state_dict(self) -> dict:
        return {"checked": self.checked, "flagged": self.flagged}

    @classmethod
    def merge(cls, observers) -> dict:
        """Walkers pooled: the fraction of all their checked frames that were flagged."""
        checked = sum(o.checked for o in observers)
        flagged = sum(o.flagged for o in observers)
        return {"unphysical_fraction": flagged / checked if checked else 0.0,
                "checked_frames": checked}

    def load_state_dict(self, state: dict) -> None:
        self.checked, self.flagged = int(state["checked"]), int(state["flagged"])


#: the key of a flagged frame whose fragments are all allowed but whose atoms collide
TOO_CLOSE = "atoms too close"


def unphysical_species(events, walkers: int = 1) -> list:
    """Per walker, its frames flagged by :class:`UnphysicalMonitor`, counted by what they
    held: ``[{"H + HO2": 3659, ...}, ...]``, most frequent first. A frame's key is its
    fragments (sorted, joined by " + "), with " (atoms too close)" added when atoms also
    collide; a frame whose fragments are all allowed but whose atoms collide is
    :data:`TOO_CLOSE`. ``events``: the run's ``events.jsonl`` records (dicts; those of a
    single-walker run carry no walker index and count as walker 0)."""
    frames = {}
    for e in events:
        if e.get("type") not in ("unphysical_species", "atoms_too_close"):
            continue
        key = (int(e.get("walker", 0)), int(e["step"]))
        entry = frames.setdefault(key, {"species": None, "close": False})
        if e["type"] == "unphysical_species":
            entry["species"] = " + ".join(sorted(e["fragments"]))
        else:
            entry["close"] = True
    counts = [{} for _ in range(max([walkers] + [w + 1 for w, _ in frames]))]
    for (w, _), entry in frames.items():
        if entry["species"] is None:
            name = TOO_CLOSE
        else:
            name = entry["species"] + (f" ({TOO_CLOSE})" if entry["close"] else "")
        counts[w][name] = counts[w].get(name, 0) + 1
    return [dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))) for c in counts]


@dataclass(kw_only=True)
class ChannelMetadConfig(MetadConfig):
    """:class:`MetadConfig` of one channel: ``deck`` defaults to the channel's shipped deck
    and ``start`` to its reactant complex (a given start must have the channel's atoms in
    its order)."""

    reaction: str = setting("", "combustion channel: 01 ... 19, 06a, 06b, 12a, 12b (its "
                                "shipped deck and reactant complex are the defaults)")

    def __post_init__(self):
        super().__post_init__()
        if not self.reaction:
            raise ValueError("give the channel (reaction id 01 ... 19, 06a, 06b, 12a, 12b)")
        self.reaction = get_channel(self.reaction).id


def channel_start(cfg: ChannelMetadConfig, channel) -> Atoms:
    if cfg.start is None:
        return reactant_complex(channel.id)
    atoms = read_start(cfg.start)
    if list(atoms.get_chemical_symbols()) != list(channel.symbols):
        raise ValueError(f"{cfg.start} has atoms {atoms.get_chemical_symbols()}, channel "
                         f"{channel.id} needs {list(channel.symbols)} in this order")
    return atoms


def run_channel_metadynamics(cfg: ChannelMetadConfig, calc=None,
                             show_progress: bool = True, start_over: bool = False) -> dict:
    """Well-tempered metadynamics of one channel (generic driver, module docstring);
    ``start_over`` moves an earlier run in the output folder aside."""
    channel = get_channel(cfg.reaction)
    run = replace(cfg, deck=cfg.deck or str(shipped_deck(channel.id)))
    if Path(run.deck).exists():
        height = metad_height_kjmol(Path(run.deck).read_text().splitlines())
        if height is not None and abs(height - HEIGHT_KJMOL) > 1e-6:
            log.warning("%s deposits hills of %.4g kJ/mol, not the protocol's %g kJ/mol (check "
                        "its UNITS ENERGY and HEIGHT)", run.deck, height, HEIGHT_KJMOL)
    return run_metadynamics(
        run, atoms=channel_start(cfg, channel), calc=calc,
        observers=[UnphysicalMonitor(channel)],
        record={"application": "h2combustion", "reaction": channel.id,
                "equation": channel.reaction, "label": f"metad rxn{channel.id}"},
        show_progress=show_progress, start_over=start_over)
