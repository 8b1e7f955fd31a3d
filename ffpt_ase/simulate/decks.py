"""Writer of the PLUMED input decks in ``plumed_inputs/rxnNN.dat`` (one per channel).

The shipped decks are this module's output (``python -m ffpt_ase.simulate.decks``
rewrites them; a test checks they are up to date), so the channel table stays the single
source of the atom indices. Every choice is written into the deck as a comment.

Settings (FFPT paper): well-tempered METAD, Gaussians of HEIGHT 5 kJ/mol and SIGMA 0.05 on
both coordination numbers, PACE 100 steps, TEMP 300 K. Choices made here:

* coordination numbers use PLUMED's rational switching function
  s(r) = (1 - (r/R_0)^6) / (1 - (r/R_0)^12) with R_0 = 1.3 r_eq, r_eq the equilibrium
  length of that bond (H-H 0.74, O-H 0.97, O-O 1.21 in O2 / 1.31 in HO2 / 1.45 in H2O2 A),
  so a bond at equilibrium counts ~0.83 and a bond stretched to 2.5 r_eq counts < 0.01;
* BIASFACTOR 20 (Delta T = 5700 K): reactions here have free-energy barriers of tens to a
  few hundred kJ/mol; gamma = 20 lets the bias reach that range while still converging;
* UPPER_WALLS at 4.0 A (KAPPA 500 kJ/mol/A^2) on every atom pair that enters a collective
  variable: gas-phase fragments cannot drift beyond the model's 5 A cutoff, where nothing
  pulls them back and sampling would stall;
* UNITS LENGTH=A TIME=fs ENERGY=kj/mol, stated explicitly, so HEIGHT=5.0 is 5 kJ/mol.
"""

from __future__ import annotations

from pathlib import Path

from .channels import Channel, channel_ids, get_channel

HEIGHT_KJMOL = 5.0
SIGMA = 0.05
PACE = 100
TEMPERATURE_K = 300.0
BIASFACTOR = 20.0
SWITCH_SCALE = 1.3
WALL_AT_A = 4.0
WALL_KAPPA = 500.0
GRID = (-0.5, 3.0, 350)
COLVAR_STRIDE = 10

_OO = {"O2": 1.21, "HO2": 1.31, "H2O2": 1.45}
_FIXED = {("H", "H"): 0.74, ("H", "O"): 0.97}


def pair_reference_length(ch: Channel, i: int, j: int) -> float:
    """Equilibrium length (A) of the i-j bond, from the species in which it is a bond."""
    key = tuple(sorted((ch.symbols[i], ch.symbols[j])))
    if key in _FIXED:
        return _FIXED[key]
    for species, atoms in ch.reactants + ch.products:
        if i in atoms and j in atoms and species in _OO:
            return _OO[species]
    return _OO["O2"]


def _label(ch: Channel, i: int) -> str:
    el = ch.symbols[i]
    return f"{el}{sum(1 for k in range(i + 1) if ch.symbols[k] == el)}"


def _coordination(name: str, ch: Channel, pairs) -> list:
    lengths = {round(pair_reference_length(ch, i, j), 3) for i, j in pairs}
    if len(lengths) != 1:
        raise ValueError(f"channel {ch.id}: CV {name} mixes bond types {lengths}")
    r0 = SWITCH_SCALE * lengths.pop()
    desc = ", ".join(f"{_label(ch, i)}-{_label(ch, j)}" for i, j in pairs)
    shared = set(pairs[0]).intersection(*map(set, pairs[1:])) if len(pairs) > 1 else None
    if len(pairs) == 1:
        groups = f"GROUPA={pairs[0][0] + 1} GROUPB={pairs[0][1] + 1}"
    elif shared:
        c = shared.pop()
        others = [j if i == c else i for i, j in pairs]
        groups = f"GROUPA={c + 1} GROUPB={','.join(str(o + 1) for o in others)}"
    else:
        groups = (f"GROUPA={','.join(str(i + 1) for i, _ in pairs)} "
                  f"GROUPB={','.join(str(j + 1) for _, j in pairs)} PAIR")
    return [f"# {name.upper()} = {desc}  (r_eq {r0 / SWITCH_SCALE:.2f} A -> R_0 = {r0:.3f} A)",
            f"{name}: COORDINATION {groups} SWITCH={{RATIONAL R_0={r0:.3f} NN=6 MM=12}}"]


def deck_text(cid) -> str:
    ch = get_channel(cid)
    order = ", ".join(f"{k + 1} {_label(ch, k)}" for k in range(ch.n_atoms))
    mult = {1: "singlet", 2: "doublet", 3: "triplet", 4: "quartet"}[ch.multiplicity]
    pairs = sorted({tuple(sorted(p)) for p in ch.cv1 + ch.cv2})
    lines = [
        f"# PLUMED input, hydrogen-combustion channel {ch.id}: {ch.reaction} ({mult})",
        "# Written by ffpt_ase.simulate.decks; used by `ffpt-ase metad --reaction "
        f"{ch.id}`.",
        f"# Atoms (1-based, order of the combustion data set): {order}",
        "#",
        "# Units: lengths in Angstrom, times in fs, energies in kJ/mol (stated explicitly:",
        "# HEIGHT=5.0 below is 5 kJ/mol; changing ENERGY would change what HEIGHT means).",
        "UNITS LENGTH=A TIME=fs ENERGY=kj/mol",
        "",
        "# Collective variables: coordination numbers, rational switching function",
        "#   s(r) = (1 - (r/R_0)^6) / (1 - (r/R_0)^12),  R_0 = 1.3 x equilibrium bond length",
    ]
    lines += _coordination("cn1", ch, ch.cv1)
    lines += _coordination("cn2", ch, ch.cv2)
    lines += ["", f"# Upper walls at {WALL_AT_A} A on every CV atom pair: fragments stay within "
              "the model's", "# 5 A cutoff instead of drifting apart in the gas phase."]
    names = []
    for k, (i, j) in enumerate(pairs, start=1):
        lines.append(f"d{k}: DISTANCE ATOMS={i + 1},{j + 1}   # {_label(ch, i)}-{_label(ch, j)}")
        names.append(f"d{k}")
    n = len(names)
    lines += [f"walls: UPPER_WALLS ARG={','.join(names)} AT={','.join([str(WALL_AT_A)] * n)} "
              f"KAPPA={','.join([str(WALL_KAPPA)] * n)}",
              "",
              f"# Well-tempered metadynamics: {HEIGHT_KJMOL:g} kJ/mol Gaussians of width {SIGMA} "
              f"every {PACE} steps at {TEMPERATURE_K:g} K;",
              f"# bias factor {BIASFACTOR:g} (Delta T = {(BIASFACTOR - 1) * TEMPERATURE_K:g} K). "
              "The grid only speeds up the bias evaluation.",
              f"metad: METAD ARG=cn1,cn2 SIGMA={SIGMA},{SIGMA} HEIGHT={HEIGHT_KJMOL} PACE={PACE} "
              f"TEMP={TEMPERATURE_K:g} BIASFACTOR={BIASFACTOR:g} FILE=HILLS "
              f"GRID_MIN={GRID[0]},{GRID[0]} GRID_MAX={GRID[1]},{GRID[1]} "
              f"GRID_BIN={GRID[2]},{GRID[2]}",
              "",
              f"PRINT ARG=cn1,cn2,{','.join(names)},metad.bias,walls.bias "
              f"STRIDE={COLVAR_STRIDE} FILE=COLVAR",
              f"FLUSH STRIDE={PACE}",
              ""]
    return "\n".join(lines)


_ENERGY_UNITS_KJMOL = {"kj/mol": 1.0, "kcal/mol": 4.184, "ev": 96.48533212, "j/mol": 1e-3}


def metad_height_kjmol(lines) -> float | None:
    """HEIGHT of the deck's METAD converted to kJ/mol with its UNITS line.

    The trap this guards against: PLUMED reads HEIGHT in the deck's ENERGY unit, so a deck
    that switches to ``ENERGY=eV`` but keeps ``HEIGHT=5`` deposits 482 kJ/mol hills.
    """
    unit, height = "kj/mol", None
    for line in lines:
        line = line.split("#", 1)[0]
        words = line.split()
        if words and words[0] == "UNITS":
            for w in words[1:]:
                if w.upper().startswith("ENERGY="):
                    unit = w.split("=", 1)[1].lower()
        if "METAD" in words:
            for w in words:
                if w.upper().startswith("HEIGHT="):
                    height = float(w.split("=", 1)[1])
    if height is None:
        return None
    if unit not in _ENERGY_UNITS_KJMOL:
        raise ValueError(f"unknown PLUMED energy unit {unit!r}")
    return height * _ENERGY_UNITS_KJMOL[unit]


def deck_name(cid) -> str:
    return f"rxn{get_channel(cid).id}.dat"


def write_decks(folder: str | Path) -> list:
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
    target = sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parents[2] / "plumed_inputs"
    for p in write_decks(target):
        print(p)
