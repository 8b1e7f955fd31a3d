"""Derive Q-Force style parameters for the hydrogen-combustion species from DFT (PySCF).

This is what ``ffpt-ase parametrize qforce`` runs; its output is the parameter file shipped
with the package. The procedure follows Q-Force (Sami et al., JCTC 17, 4946 (2021)):

1. relax each molecule (H2, O2, OH, H2O, HO2, H2O2) in its ground spin state;
2. equilibrium values r0, theta0 are taken from the relaxed geometry;
3. bond and angle force constants are fitted, by linear least squares, so that the force
   field's Cartesian Hessian at the minimum, sum_t k_t g_t g_t^T (g_t = dq_t/dx), matches
   the analytic DFT Hessian (terms of one type within a molecule share one constant);
4. dihedral terms k_n (1 + cos(n phi - phi0_n)), n = 1..4, phi0 in {0, pi}, are fitted to a
   rigid torsion scan (H2O2) and their curvature is removed from the Hessian before step 3;
5. each Morse well depth D partitions the species' atomization energy at the same level,
   AE = sum E(free atoms) - E(species), the rule the paper's Table 1 follows (its D values
   reproduce the combustion data set's atomization energies to 0.03 kJ/mol):

   * a diatomic's bond takes the whole AE (H2, OH, O2);
   * in a polyatomic species every bond to hydrogen X-H takes the D of the diatomic X-H
     radical (O-H in HO2 and H2O2 take OH's D), unless all its bonds are of that one type,
     in which case they split the AE equally (the two O-H bonds of H2O);
   * the remaining (heavy-atom) bonds split what is left equally (O-O in HO2, H2O2).

   With the ``- D`` shift of every Morse term each species' minimum then sits at ``-AE``:
   the force field shares the ab initio labels' energy zero (free atoms), and reaction
   energies between isolated species are those of the level of theory (up to a torsion
   series that is not zero at its own minimum, about 5 kJ/mol for H2O2 in Table 1).
   ``partition_well_depths`` is that rule on its own.

Everything runs at one level of theory (default UKS/RKS B3LYP/6-31G*, a few minutes on two
cores; the paper's is wB97X-V/cc-pVTZ). Results are written in nm, kJ/mol and rad with the
method, the rule and the atomization energies recorded as provenance.
"""

from __future__ import annotations

import datetime
import json
import logging
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.optimize import BFGS

from .geometry import angles, dihedrals, distances
from .qforce_table import cosine_series, series_minimum
from .topology import canonical_label, perceive

log = logging.getLogger(__name__)

#: ground-state multiplicities and rough starting geometries (A) of the species
SPECIES = {
    "H": (2, Atoms("H", positions=[[0, 0, 0]])),
    "O": (3, Atoms("O", positions=[[0, 0, 0]])),
    "H2": (1, Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.75]])),
    "O2": (3, Atoms("O2", positions=[[0, 0, 0], [0, 0, 1.21]])),
    "HO": (2, Atoms("OH", positions=[[0, 0, 0], [0, 0, 0.97]])),
    "H2O": (1, Atoms("OH2", positions=[[0, 0, 0], [0.76, 0.59, 0], [-0.76, 0.59, 0]])),
    "HO2": (2, Atoms("OOH", positions=[[0, 0, 0], [1.33, 0, 0], [1.60, 0.92, 0]])),
    "H2O2": (1, Atoms("OOHH", positions=[[0, 0, 0], [1.45, 0, 0], [-0.30, 0.90, 0.30],
                                         [1.75, 0.30, 0.85]])),
}


def partition_well_depths(bond_labels: dict, atomization: dict, offsets=None) -> dict:
    """Morse depths D per species and bond label from atomization energies (rule 5 above).

    ``bond_labels[species]`` lists the labels of its bonds, one per bond (``['H-O', 'O-O']``
    for HO2); ``atomization[species]`` is its atomization energy (any energy unit; D comes
    out in the same one). ``offsets[species]``, if given, is the energy of the species'
    other terms at its minimum (a torsion series that is not zero there); the bonds that
    share the remainder absorb it, so that the minimum still sits at exactly ``-AE``.
    Returns ``{species: {label: D}}``. Raises ValueError when a species
    needs the D of a diatomic X-H radical that is not in the set, or leaves more than one
    heavy-atom bond type to share the rest (the rule would be ambiguous).
    """
    depths = {}
    offsets = offsets or {}
    diatomic = {labels[0]: atomization[sp] for sp, labels in bond_labels.items()
                if len(labels) == 1}
    for species, labels in bond_labels.items():
        if len(labels) == 1 or len(set(labels)) == 1:
            depths[species] = {labels[0]: (atomization[species] + offsets.get(species, 0.0))
                               / len(labels)}
            continue
        d = {}
        with_h = [lab for lab in labels if "H" in lab.split("-")]
        for lab in set(with_h):
            if lab not in diatomic:
                raise ValueError(f"{species}: the D of its {lab} bonds comes from the diatomic "
                                 f"{lab} radical, which is not among the species")
            d[lab] = diatomic[lab]
        rest = [lab for lab in labels if lab not in d]
        if len(set(rest)) != 1:
            raise ValueError(f"{species}: {sorted(set(rest)) or 'no'} heavy-atom bond types "
                             "left to share the atomization energy; the rule needs exactly one")
        left = atomization[species] + offsets.get(species, 0.0) - \
            sum(d[lab] for lab in labels if lab in d)
        d[rest[0]] = left / len(rest)
        depths[species] = d
    return depths

_KJMOL = units.kJ / units.mol


def _design_row(grads, n_atoms):
    """Sum over terms of one type of the outer products g g^T, flattened to (3N)^2."""
    total = np.zeros((3 * n_atoms, 3 * n_atoms))
    for idx, g in grads:
        v = np.zeros((n_atoms, 3))
        for a, ga in zip(idx, g):
            v[a] += ga
        v = v.reshape(-1)
        total += np.outer(v, v)
    return total.reshape(-1)


def fit_torsion(phis: np.ndarray, energies: np.ndarray, n_max: int = 4):
    """Fit ``E(phi) = c + sum_n k_n (1 + cos(n phi - phi0_n))`` with phi0_n in {0, pi}.

    Returns a list of ``(k_n >= 0, n, phi0_n)``. Writing the series as ``sum c_n cos(n phi)``
    makes the fit linear; then k_n = |c_n| and phi0_n = 0 (c_n > 0) or pi (c_n < 0).
    """
    A = np.column_stack([np.ones_like(phis)] + [np.cos(n * phis) for n in range(1, n_max + 1)])
    coef, *_ = np.linalg.lstsq(A, energies, rcond=None)
    return [(abs(c), n, 0.0 if c >= 0 else np.pi) for n, c in zip(range(1, n_max + 1), coef[1:])]


def fit_force_constants(atoms, hessian, topo=None):
    """Least-squares bond and angle force constants from a Cartesian Hessian (eV/A^2).

    Returns ``(kinds, k)``: ``kinds[i] = (kind, label, equilibrium value)`` with kind
    ``'bonds'`` (k in eV/A^2, value in A) or ``'angles'`` (k in eV/rad^2, value in rad),
    averaged over the terms of that label. Terms sharing a label share one constant.
    """
    n = len(atoms)
    pos = atoms.positions[None]
    topo = topo or perceive(atoms.numbers, atoms.positions)
    sym = atoms.get_chemical_symbols()
    columns, kinds = [], []
    r, gb = distances(pos, topo.bonds)
    th, ga = angles(pos, topo.angles) if len(topo.angles) else (np.zeros((1, 0)), None)
    for kind, idx, vals, grads in (("bonds", topo.bonds, r[0], gb),
                                   ("angles", topo.angles, th[0], ga)):
        labels = [canonical_label([sym[a] for a in t]) for t in idx]
        for label in sorted(set(labels)):
            sel = [m for m, lab in enumerate(labels) if lab == label]
            columns.append(_design_row([(idx[m], grads[0, m]) for m in sel], n))
            kinds.append((kind, label, float(np.mean(vals[sel]))))
    k_fit, *_ = np.linalg.lstsq(np.column_stack(columns), np.asarray(hessian).reshape(-1),
                                rcond=None)
    bad = [kd[1] for kd, k in zip(kinds, k_fit) if k <= 0]
    if bad:
        raise RuntimeError(f"non-positive force constants fitted for {bad}")
    return kinds, k_fit


def _torsion_scan(calc, atoms, dih, step_deg):
    """Rigid scan: rotate the atoms on the l side of the j-k bond about that bond."""
    i, j, k, l = dih
    topo = perceive(atoms.numbers, atoms.positions)
    # atoms attached to k through paths avoiding j (for H2O2 this is just l)
    side, stack = {k}, [k]
    neigh = {a: set() for a in range(len(atoms))}
    for a, b in topo.bonds:
        neigh[a].add(b)
        neigh[b].add(a)
    while stack:
        a = stack.pop()
        for b in neigh[a] - {j} - side:
            side.add(b)
            stack.append(b)
    moving = sorted(side - {k})
    phi_ref = dihedrals(atoms.positions[None], np.array([dih]))[0][0, 0]
    grid = np.deg2rad(np.arange(0.0, 360.0, step_deg))
    energies = []
    for target in grid:
        a = atoms.copy()
        axis = a.positions[k] - a.positions[j]
        a.rotate(np.rad2deg(target - phi_ref), axis, center=a.positions[k])
        a.positions[[x for x in range(len(a)) if x not in moving]] = \
            atoms.positions[[x for x in range(len(a)) if x not in moving]]
        phi = dihedrals(a.positions[None], np.array([dih]))[0][0, 0]
        a.calc = calc
        energies.append(a.get_potential_energy())
        log.info("torsion %.0f deg (measured %.1f): %.6f eV", np.rad2deg(target),
                 np.rad2deg(phi), energies[-1])
    return grid, np.array(energies)


def parametrize_species(xc="b3lyp", basis="6-31g*", fmax=0.005, torsion_step_deg=15.0):
    """Run the full procedure; returns the parameter-file dictionary (nm, kJ/mol, rad)."""
    from ..abinitio import PySCFCalculator

    relaxed, energy = {}, {}
    for name, (mult, start) in SPECIES.items():
        atoms = start.copy()
        calc = PySCFCalculator(xc=xc, basis=basis, multiplicity=mult)
        atoms.calc = calc
        if len(atoms) > 1:
            BFGS(atoms, logfile=None).run(fmax=fmax, steps=200)
        energy[name] = atoms.get_potential_energy()
        relaxed[name] = (atoms, calc)
        log.info("%s (2S+1=%d): E = %.6f eV", name, mult, energy[name])

    atomization = {name: sum(energy[el] for el in atoms.get_chemical_symbols()) - energy[name]
                   for name, (atoms, _) in relaxed.items() if len(atoms) > 1}
    labels = {}
    for name, (atoms, _) in relaxed.items():
        if len(atoms) > 1:
            sym = atoms.get_chemical_symbols()
            labels[name] = [canonical_label([sym[i], sym[j]])
                            for i, j in perceive(atoms.numbers, atoms.positions).bonds]

    out = {}
    for name, (atoms, calc) in relaxed.items():
        if len(atoms) == 1:
            continue
        n = len(atoms)
        pos = atoms.positions[None]
        topo = perceive(atoms.numbers, atoms.positions)
        sym = atoms.get_chemical_symbols()
        entry = {"multiplicity": SPECIES[name][0], "bonds": {}, "angles": {}, "dihedrals": {},
                 "atomization_energy_kJ_per_mol": float(atomization[name] / _KJMOL)}
        hess = calc.hessian(atoms)

        # dihedrals first: fitted to a scan, their curvature removed from the Hessian
        torsion_at_minimum = 0.0
        if len(topo.dihedrals):
            phi_all, g_all = dihedrals(pos, topo.dihedrals)
            for t, dih in enumerate(topo.dihedrals):
                label = canonical_label([sym[a] for a in dih])
                grid, e_scan = _torsion_scan(calc, atoms, dih, torsion_step_deg)
                terms = fit_torsion(grid, e_scan - e_scan.min())
                entry["dihedrals"][label] = [
                    {"k": float(k / _KJMOL), "n": nn, "phi0": float(p0)} for k, nn, p0 in terms]
                phi = phi_all[0, t]
                # the force field's minimum has this torsion at its series' lowest point
                torsion_at_minimum += float(cosine_series(series_minimum(terms), terms))
                curv = sum(k * nn * nn * -np.cos(nn * phi - p0) for k, nn, p0 in terms)
                hess = hess - curv * _design_row([(dih, g_all[0, t])], n).reshape(3 * n, 3 * n)

        # bonds and angles: one force constant per (species, term type); D by the partition
        depths = partition_well_depths(labels, atomization, {name: torsion_at_minimum})
        kinds, k_fit = fit_force_constants(atoms, hess, topo)
        for (kind, label, eq), k in zip(kinds, k_fit):
            if kind == "bonds":
                entry["bonds"][label] = {"D": float(depths[name][label] / _KJMOL),
                                         "k": float(k / _KJMOL * 100.0),  # per A^2 -> per nm^2
                                         "r0": eq / 10.0}
            else:
                entry["angles"][label] = {"k": float(k / _KJMOL), "theta0": eq}
        entry["reference"] = {"symbols": sym,
                              "positions": (atoms.positions / 10.0).round(6).tolist()}
        out[name] = entry
    return {
        "description": "Q-Force style bonded parameters for the hydrogen-combustion species "
                       "(Morse bonds, harmonic angles, cosine dihedrals).",
        "units": {"distance": "nm", "energy": "kJ/mol", "angle": "rad"},
        "functional_form": {
            "bond": "D*(1-exp(-sqrt(k/(2D))*(r-r0)))**2 - D",
            "angle": "k/2*(theta-theta0)**2",
            "dihedral": "sum_n k*(1+cos(n*phi-phi0))"},
        "provenance": {
            "generated_by": "ffpt-ase parametrize qforce",
            "method": f"{xc}/{basis} (PySCF; UKS for open shells)",
            "date": datetime.date.today().isoformat(),
            "procedure": "ffpt_ase.forcefields.qforce_fit module docstring",
            "well_depths": "D partitions each species' atomization energy at this level (bonds "
                           "to H take the diatomic X-H radical's D, the rest shares the "
                           "remainder), so each species' minimum sits at -AE, relative to "
                           "free atoms, as in the paper's Table 1",
            "species_energies_eV": {k: float(v) for k, v in energy.items()},
        },
        "species": out,
    }


def write_parameters(path: str | Path, **kwargs) -> dict:
    """Run :func:`parametrize_species` and write the JSON parameter file."""
    data = parametrize_species(**kwargs)
    Path(path).write_text(json.dumps(data, indent=2) + "\n")
    return data
