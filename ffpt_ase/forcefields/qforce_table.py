"""The paper's printed Q-Force table -> the package's parameter-file layout.

Yuan & Head-Gordon (arXiv:2509.14205, Methods, Table 1) print the hydrogen-combustion force
field as rows per species (``{"species": "HO2", "pair": "O-H", "r0", "k_r", "D"}``; nm, kJ/mol,
rad). :func:`parameters_from_table` turns that transcription into the per-species layout that
:class:`~ffpt_ase.forcefields.qforce.QForceParameters` reads, adding what the table leaves
implicit:

* the functional form, with the Morse exponent read as ``sqrt(k_r / 2D) (r - r0)`` (the
  printed ``k_r (r - r0) / 2D`` is not dimensionless; the square-root reading is the one for
  which ``k_r`` is the curvature at ``r0`` and is Q-Force's own convention);
* a reference geometry per species *at the force field's minimum*: bonds at r0, angles at
  theta0 and, for H2O2, the H-O-O-H dihedral at the minimum of the printed cosine series
  (about 115 deg; its rows use signed ``k_phi`` with ``phi0`` in {0, pi}). With three
  atoms or four in a chain the internal coordinates are independent, so this point is the
  exact minimum;
* the energy zero of each species: with the ``- D`` shift of every Morse term, a species at
  r0/theta0 sits at ``-sum(D)``. Table 1's D values partition the data set's atomization
  energies (see :mod:`~ffpt_ase.forcefields.qforce_fit`), so these minima line up with the
  combustion data set's labels, relative to free atoms. The one exception is H2O2: its
  cosine series is zero at the trans geometry (180 deg), not at its minimum, which lies
  ``dihedral_offset_kJ_per_mol`` (-5.05 kJ/mol) lower; the file records that number.

``python -m ffpt_ase.forcefields.qforce_table TABLE.json OUT.json`` writes the shipped
``params/qforce_table1.json`` from ``../shared/data/qforce/table1.json``; a test checks that
the two agree number for number.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar

from .topology import canonical_label, hill_formula

#: atoms, bonds (0-based) and ground-state spin multiplicity of the species Table 1 covers;
#: atom order: heavy atoms first, each H after the atom it is bonded to
SKELETONS = {
    "H2": (["H", "H"], [(0, 1)], 1),
    "OH": (["O", "H"], [(0, 1)], 2),
    "O2": (["O", "O"], [(0, 1)], 3),
    "H2O": (["O", "H", "H"], [(0, 1), (0, 2)], 1),
    "HO2": (["O", "O", "H"], [(0, 1), (0, 2)], 2),
    "H2O2": (["O", "O", "H", "H"], [(0, 1), (0, 2), (1, 3)], 1),
}


def cosine_series(phi, terms):
    """sum_n k_n (1 + cos(n phi - phi0_n)) for ``terms = [(k, n, phi0), ...]`` (any units)."""
    phi = np.asarray(phi, float)
    return sum(k * (1.0 + np.cos(n * phi - p0)) for k, n, p0 in terms)


def series_minimum(terms) -> float:
    """Dihedral angle (rad, in [0, pi]) of the lowest point of a cosine series."""
    grid = np.linspace(0.0, np.pi, 721)
    start = grid[np.argmin(cosine_series(grid, terms))]
    lo, hi = max(0.0, start - 0.01), min(np.pi, start + 0.01)
    res = minimize_scalar(lambda p: float(cosine_series(p, terms)), bounds=(lo, hi),
                          method="bounded", options={"xatol": 1e-12})
    return float(res.x)


def _place(a, b, c, r, theta, phi):
    """Position of an atom bonded to ``c`` at distance r, angle (b, c, new) = theta and
    dihedral (a, b, c, new) = phi (A, rad): the standard Z-matrix construction."""
    bc = c - b
    bc /= np.linalg.norm(bc)
    n = np.cross(b - a, bc)
    n /= np.linalg.norm(n)
    m = np.cross(n, bc)
    d = np.array([-r * np.cos(theta), r * np.sin(theta) * np.cos(phi),
                  r * np.sin(theta) * np.sin(phi)])
    return c + d[0] * bc + d[1] * m + d[2] * n


def minimum_geometry(name: str, r0: dict, theta0: dict, phi: float | None = None) -> np.ndarray:
    """Positions (A) of a Table 1 species with bonds at ``r0[label]`` (A), angles at
    ``theta0[label]`` (rad) and, for H2O2, the H-O-O-H dihedral ``phi`` (rad)."""
    symbols, bonds, _ = SKELETONS[name]
    label = lambda *idx: canonical_label([symbols[i] for i in idx])  # noqa: E731
    pos = np.zeros((len(symbols), 3))
    pos[1] = [0.0, 0.0, r0[label(0, 1)]]
    if len(symbols) == 2:
        return pos
    # third atom bonded to atom 0, at the angle (2, 0, 1)
    t = theta0[label(2, 0, 1)]
    r = r0[label(0, 2)]
    pos[2] = [r * np.sin(t), 0.0, r * np.cos(t)]
    if len(symbols) == 4:  # H2O2: atom 3 on atom 1, angle (0, 1, 3), dihedral (2, 0, 1, 3)
        pos[3] = _place(pos[2], pos[0], pos[1], r0[label(1, 3)], theta0[label(0, 1, 3)], phi)
    return pos


def parameters_from_table(table: dict) -> dict:
    """The package's parameter-file dictionary (nm, kJ/mol, rad) from a Table 1 transcription
    (``bonds``/``angles``/``dihedrals`` rows with ``species``; see the module docstring)."""
    units = table.get("units", {})
    expected = {"r0": "nm", "k_r": "kJ/mol/nm^2", "D": "kJ/mol", "theta0": "rad",
                "k_theta": "kJ/mol/rad^2", "phi0": "rad", "k_phi": "kJ/mol"}
    wrong = {k: units.get(k) for k, v in expected.items() if units.get(k) != v}
    if wrong:
        raise ValueError(f"table units {wrong} differ from Table 1's {expected}")
    species = {}
    for name, (symbols, bonds, mult) in SKELETONS.items():
        species[name] = {"multiplicity": mult, "bonds": {}, "angles": {}, "dihedrals": {}}
    for row in table["bonds"]:
        label = canonical_label(row["pair"].split("-"))
        species[row["species"]]["bonds"][label] = {"D": row["D"], "k": row["k_r"],
                                                   "r0": row["r0"]}
    for row in table["angles"]:
        label = canonical_label(row["triple"].split("-"))
        species[row["species"]]["angles"][label] = {"k": row["k_theta"], "theta0": row["theta0"]}
    for row in table["dihedrals"]:
        label = canonical_label(row["quad"].split("-"))
        species[row["species"]]["dihedrals"].setdefault(label, []).append(
            {"k": row["k_phi"], "n": int(row["n"]), "phi0": row["phi0"]})

    out = {}
    for name, entry in species.items():
        symbols = SKELETONS[name][0]
        r0 = {lab: 10.0 * p["r0"] for lab, p in entry["bonds"].items()}
        th = {lab: p["theta0"] for lab, p in entry["angles"].items()}
        phi, offset = None, 0.0
        if entry["dihedrals"]:
            (terms,) = [[(t["k"], t["n"], t["phi0"]) for t in v]
                        for v in entry["dihedrals"].values()]
            phi = series_minimum(terms)
            offset = float(cosine_series(phi, terms))
            entry["dihedral_minimum_rad"] = phi
        entry["energy_at_minimum_kJ_per_mol"] = -sum(
            p["D"] * sum(1 for i, j in SKELETONS[name][1]
                         if canonical_label([symbols[i], symbols[j]]) == lab)
            for lab, p in entry["bonds"].items()) + offset
        entry["dihedral_offset_kJ_per_mol"] = offset
        pos = minimum_geometry(name, r0, th, phi)
        entry["reference"] = {"symbols": symbols,
                              "positions": (pos / 10.0).tolist(),
                              "note": "the force field's exact minimum (bonds at r0, angles "
                                      "at theta0, dihedral at the series minimum)"}
        out[hill_formula(symbols)] = entry
    return {
        "description": "The paper's Q-Force parameters for the hydrogen-combustion species "
                       "(Table 1 of Yuan & Head-Gordon, arXiv:2509.14205), the package's "
                       "default teacher.",
        "units": {"distance": "nm", "energy": "kJ/mol", "angle": "rad"},
        "functional_form": {
            "bond": "D*(1-exp(-sqrt(k/(2D))*(r-r0)))**2 - D",
            "angle": "k/2*(theta-theta0)**2",
            "dihedral": "sum_n k*(1+cos(n*phi-phi0))  (signed k, phi0 in {0, pi})"},
        "provenance": {
            "source": table.get("source", "Table 1"),
            "generated_by": "python -m ffpt_ase.forcefields.qforce_table",
            "level_of_theory": "UKS wB97X-V/cc-pVTZ (Q-Force fit at the combustion data "
                               "set's level)",
            "morse_exponent": "printed as k_r (r - r0) / 2D, which is not dimensionless; read "
                              "as sqrt(k_r / 2D) (r - r0), for which d2E/dr2(r0) = k_r",
            "energy_zero": "free atoms; each species' minimum is -sum(D) (+ the dihedral "
                           "offset for H2O2), the data set's atomization energy",
        },
        "species": out,
    }


if __name__ == "__main__":  # pragma: no cover - maintainer tool
    import sys
    src, dst = (Path(a) for a in sys.argv[1:3])
    dst.write_text(json.dumps(parameters_from_table(json.loads(src.read_text())), indent=1)
                   + "\n")
    print(f"wrote {dst}")
