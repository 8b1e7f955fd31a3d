"""Writer of the PLUMED input decks in ``plumed_inputs/rxnNN.dat`` (one per channel).

The shipped decks are this module's output (``python -m ffpt_ase.applications.h2combustion.decks``
rewrites them; a test checks they are up to date), so the channel table stays the single
source of the atom indices. Every choice is written into the deck as a comment.

Settings (FFPT paper): well-tempered METAD, Gaussians of HEIGHT 5 kJ/mol and SIGMA 0.05 on
both coordination numbers, PACE 100 steps, TEMP 300 K. Choices made here:

* every CV atom pair gets its own switching function s(r) = (1 - (r/R_0)^n) / (1 -
  (r/R_0)^2n) (PLUMED's RATIONAL, MM = 2 NN), chosen from the pair's lengths in the data
  set's reactant and product geometries, r_near < r_far: R_0 = sqrt(r_near r_far), where
  s = 1/(1 + (r/R_0)^n) falls fastest between the two, and n is the smallest even number
  >= 6 for which s(r_near) - s(r_far) >= 0.5. A bonded pair that breaks (O-H 0.97 -> 2.41 A)
  gets R_0 ~ 1.5 A and n = 6; a geminal pair that leaves (O2-H1 of HO2, 1.84 -> 3.07 A)
  gets R_0 ~ 2.4 A; a geminal pair that only opens a little (O1-H2 of H2O2, 1.87 -> 2.38 A)
  gets n = 8. A pair whose length hardly changes (a spectator bond, channel 08's CV2) keeps
  R_0 = 1.3 r_eq and n = 6. A CV of several pairs is the sum of their coordinations
  (COMBINE), each with its own switching function;
* BIASFACTOR 40 (Delta T = 11,700 K, k Delta T = 97 kJ/mol): the walkers must climb out of
  wells up to about 300 kJ/mol deep (HO2 below O + OH) and back, more than once in a run.
  In well-tempered metadynamics the time to fill a well of depth D grows as
  exp(D / k Delta T). At gamma = 20 (47 kJ/mol) eight 50 ps walkers of the trained-out
  scratch model filled channel 01's HO2 well only to 229-234 kJ/mol and never came back
  to O + OH, and 4 of 8 channel-09 walkers never reached H + O2 (218.5 kJ/mol above
  HO2): no free-energy difference converged (RESULTS.md). exp(300 / 97) = 22 against
  exp(300 / 47) = 590: the same deposition fills such a well about 25 times sooner, and
  the bias still converges, to (1 - 1/gamma) = 0.975 of -F;
* UPPER_WALLS at 4.0 A (KAPPA 500 kJ/mol/A^2) on every atom pair that enters a collective
  variable: gas-phase fragments cannot drift beyond the model's 5 A cutoff, where nothing
  pulls them back and sampling would stall;
* every interatomic distance is printed (``r_I_J``, 1-based atoms): the analysis tells the
  chemistry of each COLVAR frame (which species are present, whether atoms collide) from
  them, so basins and unphysical frames are defined by the molecules, not by a CV point;
* UNITS LENGTH=A TIME=fs ENERGY=kj/mol, stated explicitly, so HEIGHT=5.0 is 5 kJ/mol.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .channels import EQUILIBRIUM_BOND, Channel, channel_ids, get_channel

HEIGHT_KJMOL = 5.0
SIGMA = 0.05
PACE = 100
TEMPERATURE_K = 300.0
BIASFACTOR = 40.0
SWITCH_SCALE = 1.3          # R_0 / r_eq of a spectator bond
MIN_SEPARATION = 0.5        # s(r_near) - s(r_far) each pair's switching function reaches
SPECTATOR_CHANGE_A = 0.3    # a pair changing less than this between the end points
WALL_AT_A = 4.0
WALL_KAPPA = 500.0
GRID = (-0.5, 3.0, 350)
COLVAR_STRIDE = 10

_OO = {"O2": 1.21, "HO2": 1.31, "H2O2": 1.45}   # O-O length (A) in each species


def pair_reference_length(ch: Channel, i: int, j: int) -> float:
    """Equilibrium length (A) of the i-j bond, from the species in which it is a bond."""
    key = tuple(sorted((ch.symbols[i], ch.symbols[j])))
    if key != ("O", "O"):
        return EQUILIBRIUM_BOND[key]
    for species, atoms in ch.reactants + ch.products:
        if i in atoms and j in atoms and species in _OO:
            return _OO[species]
    return _OO["O2"]


def rational(r, r0: float, nn: int) -> float:
    """PLUMED's RATIONAL switching function with MM = 2 NN: 1 / (1 + (r/R_0)^NN)."""
    return 1.0 / (1.0 + (r / r0) ** nn)


def pair_switch(ch: Channel, i: int, j: int) -> tuple:
    """``(R_0 in A, NN, why)`` of the switching function of CV pair i-j (module doc)."""
    r_a, r_b = ch.cv_pair_lengths[tuple(sorted((i, j)))]
    near, far = sorted((r_a, r_b))
    if far - near < SPECTATOR_CHANGE_A:
        r_eq = pair_reference_length(ch, i, j)
        return round(SWITCH_SCALE * r_eq, 3), 6, f"spectator ({near:.2f} -> {far:.2f} A): " \
            f"R_0 = {SWITCH_SCALE} r_eq"
    r0 = round(float(np.sqrt(near * far)), 3)
    nn = 6
    while rational(near, r0, nn) - rational(far, r0, nn) < MIN_SEPARATION and nn < 24:
        nn += 2
    return r0, nn, f"{near:.2f} -> {far:.2f} A: s = {rational(near, r0, nn):.2f} -> " \
        f"{rational(far, r0, nn):.2f}"


def collective_variables(cid, positions) -> np.ndarray:
    """(cn1, cn2) of the channel's deck for positions (frames, atoms, 3) in A, in NumPy:
    the same switching functions PLUMED evaluates (a test checks the two agree)."""
    ch = get_channel(cid)
    pos = np.asarray(positions, float).reshape(-1, ch.n_atoms, 3)
    out = np.zeros((len(pos), 2))
    for k, pairs in enumerate((ch.cv1, ch.cv2)):
        for i, j in pairs:
            r0, nn, _ = pair_switch(ch, i, j)
            r = np.linalg.norm(pos[:, i] - pos[:, j], axis=-1)
            out[:, k] += rational(r, r0, nn)
    return out


def _label(ch: Channel, i: int) -> str:
    el = ch.symbols[i]
    return f"{el}{sum(1 for k in range(i + 1) if ch.symbols[k] == el)}"


def _coordination(name: str, ch: Channel, pairs) -> list:
    lines, parts = [], []
    for k, (i, j) in enumerate(pairs):
        r0, nn, why = pair_switch(ch, i, j)
        part = name if len(pairs) == 1 else f"{name}_{k + 1}"
        lines += [f"# {part}: {_label(ch, i)}-{_label(ch, j)}, {why}",
                  f"{part}: COORDINATION GROUPA={i + 1} GROUPB={j + 1} "
                  f"SWITCH={{RATIONAL R_0={r0:.3f} NN={nn} MM={2 * nn}}}"]
        parts.append(part)
    if len(parts) > 1:
        lines.append(f"{name}: COMBINE ARG={','.join(parts)} PERIODIC=NO   # sum of the pairs")
    return lines


def deck_text(cid) -> str:
    ch = get_channel(cid)
    order = ", ".join(f"{k + 1} {_label(ch, k)}" for k in range(ch.n_atoms))
    mult = {1: "singlet", 2: "doublet", 3: "triplet", 4: "quartet"}[ch.multiplicity]
    pairs = sorted({tuple(sorted(p)) for p in ch.cv1 + ch.cv2})
    lines = [
        f"# PLUMED input, hydrogen-combustion channel {ch.id}: {ch.reaction} ({mult})",
        "# Written by ffpt_ase.applications.h2combustion.decks; used by `ffpt-ase metad --reaction "
        f"{ch.id}`.",
        f"# Atoms (1-based, order of the combustion data set): {order}",
        "#",
        "# Units: lengths in Angstrom, times in fs, energies in kJ/mol (stated explicitly:",
        "# HEIGHT=5.0 below is 5 kJ/mol; changing ENERGY would change what HEIGHT means).",
        "UNITS LENGTH=A TIME=fs ENERGY=kj/mol",
        "",
        "# Collective variables: coordination numbers, one rational switching function per",
        "# atom pair, s(r) = (1 - (r/R_0)^NN) / (1 - (r/R_0)^MM), R_0 and NN chosen from the",
        "# pair's lengths in the data set's reactant and product geometries (near -> far).",
    ]
    lines += _coordination("cn1", ch, ch.cv1)
    lines += _coordination("cn2", ch, ch.cv2)
    all_pairs = [(i, j) for i in range(ch.n_atoms) for j in range(i + 1, ch.n_atoms)]
    dist = {p: f"r_{p[0] + 1}_{p[1] + 1}" for p in all_pairs}
    lines += ["", "# All interatomic distances (A): the analysis reads the chemistry of every "
              "frame from them."]
    lines += [f"{dist[p]}: DISTANCE ATOMS={p[0] + 1},{p[1] + 1}   # {_label(ch, p[0])}-"
              f"{_label(ch, p[1])}" for p in all_pairs]
    names = [dist[p] for p in pairs]
    n = len(names)
    lines += ["", f"# Upper walls at {WALL_AT_A} A on every CV atom pair: fragments stay within "
              "the model's", "# 5 A cutoff instead of drifting apart in the gas phase.",
              f"walls: UPPER_WALLS ARG={','.join(names)} AT={','.join([str(WALL_AT_A)] * n)} "
              f"KAPPA={','.join([str(WALL_KAPPA)] * n)}",
              "",
              f"# Well-tempered metadynamics: {HEIGHT_KJMOL:g} kJ/mol Gaussians of width {SIGMA} "
              f"every {PACE} steps at {TEMPERATURE_K:g} K;",
              f"# bias factor {BIASFACTOR:g} (Delta T = {(BIASFACTOR - 1) * TEMPERATURE_K:g} K). "
              "The grid only speeds up the bias evaluation.",
              "# `ffpt-ase metad --temperature T` sets TEMP to T in the run's copy of this deck.",
              f"metad: METAD ARG=cn1,cn2 SIGMA={SIGMA},{SIGMA} HEIGHT={HEIGHT_KJMOL} PACE={PACE} "
              f"TEMP={TEMPERATURE_K:g} BIASFACTOR={BIASFACTOR:g} FILE=HILLS "
              f"GRID_MIN={GRID[0]},{GRID[0]} GRID_MAX={GRID[1]},{GRID[1]} "
              f"GRID_BIN={GRID[2]},{GRID[2]}",
              "",
              f"PRINT ARG=cn1,cn2,{','.join(dist[p] for p in all_pairs)},metad.bias,walls.bias "
              f"STRIDE={COLVAR_STRIDE} FILE=COLVAR",
              f"FLUSH STRIDE={PACE}",
              ""]
    return "\n".join(lines)


def deck_name(cid) -> str:
    return f"rxn{get_channel(cid).id}.dat"


def shipped_deck(cid) -> Path:
    """The channel's deck as shipped with the package (``plumed_inputs/`` holds the same
    files for users who read them; a test keeps the two identical)."""
    from importlib import resources
    path = Path(str(resources.files(__package__).joinpath("decks", deck_name(cid))))
    if not path.exists():
        raise FileNotFoundError(f"PLUMED deck {path} is missing from the installation")
    return path


def write_decks(folder: str | Path) -> list:
    """Write every channel's deck into ``folder``; returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for cid in channel_ids():
        path = folder / deck_name(cid)
        path.write_text(deck_text(cid))
        out.append(path)
    return out


if __name__ == "__main__":  # pragma: no cover - maintainer tool
    import sys
    targets = sys.argv[1:] or [Path(__file__).parent / "decks",
                               Path(__file__).parents[3] / "plumed_inputs"]
    for target in targets:
        for p in write_decks(target):
            print(p)
