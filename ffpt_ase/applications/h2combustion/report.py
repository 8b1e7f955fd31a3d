"""The FES report of a channel's metadynamics run: the generic report with chemistry basins.

A COLVAR frame of a combustion channel is reactant when its fragments (bonds from the
printed interatomic distances ``r_I_J``, 1.25 x covalent radii) are exactly the reactant
species, in any isomer (the H-shifted HO2 is HO2), product likewise; frames the channel
calls unphysical (colliding atoms, foreign species such as O + OH from HO2, foreign
however stretched bonds are counted) belong to no basin, and their fraction is reported.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...analysis.metad_report import Basins, fes_report, run_settings
from .channels import get_channel, product_complex, reactant_complex
from .decks import collective_variables


def distance_matrices(colvar: dict, n_atoms: int):
    """(frames, atoms, atoms) from COLVAR's r_I_J columns (A), or None if any is missing."""
    names = {(i, j): f"r_{i + 1}_{j + 1}" for i in range(n_atoms) for j in range(i + 1, n_atoms)}
    if not all(n in colvar for n in names.values()):
        return None
    n_frames = len(next(iter(colvar.values())))
    d = np.zeros((n_frames, n_atoms, n_atoms))
    for (i, j), n in names.items():
        d[:, i, j] = d[:, j, i] = colvar[n]
    return d


def basin_points(cid) -> dict:
    """CV-space points of the channel's reactant and product species (package geometries,
    fragments 2.5 A apart as in the driver's start), for marking the FES plot."""
    return {"reactant": tuple(collective_variables(cid, reactant_complex(cid).positions)[0]),
            "product": tuple(collective_variables(cid, product_complex(cid).positions)[0])}


def channel_basins(cid) -> Basins:
    """Chemistry basins of a channel (module docstring) for the generic report."""
    ch = get_channel(cid)

    def classify(colvar):
        d = distance_matrices(colvar, ch.n_atoms)
        return None if d is None else ch.classify(d)

    return Basins(classify=classify, points=basin_points(ch.id), title=f"rxn {ch.id}",
                  missing_note="COLVAR has no interatomic distances r_I_J (a deck written "
                               "before they were printed): no chemistry basins, no Delta F")


def channel_fes_report(source: str | Path, output: str | Path, reaction: str | None = None,
                       **kwargs) -> dict:
    """The FES report of a channel's run; ``reaction`` defaults to the run's own (its
    ``state.json``); ``kwargs`` as for :func:`~ffpt_ase.analysis.metad_report.fes_report`."""
    source = Path(source)
    if reaction is None:
        reaction = run_settings(source).get("reaction")
    if not reaction:
        raise ValueError(f"{source} records no combustion channel: give it (--reaction NN)")
    cid = get_channel(reaction).id
    return fes_report(source, output, basins=channel_basins(cid), record={"reaction": cid},
                      **kwargs)
