"""The 19 hydrogen-combustion reaction channels (21 with the two spin states of 06 and 12).

``channels.json`` (shipped) holds, per channel id ('01' ... '19', '06a', '06b', '12a',
'12b'): the reaction, spin multiplicity, the atom order of the data set (Guan et al.,
Sci. Data 9, 215 (2022)), the reactant fragments with their bonds, the product fragments,
the two coordination-number collective variables as 0-based atom pairs, and the length of
each CV pair in the data set's reactant and product geometries (which sets its switching
function, see :mod:`~ffpt_ase.applications.h2combustion.decks`), and the reaction energy
between the isolated species at the data set's level (the demo prints it beside the
teacher's and the model's). It was derived from the data set's README table (reaction,
multiplicity, CV atom labels such as ``O2-H1``) and the atom order and bonding of its
``geometries/{reactant,product}_NN.xyz`` files (in several channels the file called
'reactant' holds the products of the reaction as named; the table is oriented as the
reaction is named). ``tests/test_metadynamics.py`` checks it against the data when the data
are present.

:func:`reactant_complex` builds a starting geometry without any external data: each
reactant species is taken from the Q-Force parameter file's reference geometries, mapped
onto the channel's atom order by matching bonds, and the fragments are placed
``separation`` Angstrom apart along the forming bond of the first collective variable.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np
from ase import Atoms
from ase.data import covalent_radii

from ...forcefields.topology import (BOND_SCALE, close_contacts,
                                    fragment_formulas_from_distances, hill_formula, perceive)

#: a bond stretched beyond BOND_SCALE (topology's bonding threshold) but within BREAKING
#: times the sum of covalent radii is breaking or forming: it does not make a foreign species
BREAKING = 1.6

#: fragments are apart (a basin of several species) only when every pair of atoms in
#: different fragments is at least APART_A (A) apart: at 3 A the data set's H2 and O2
#: dissociation curves (05, 06a, 06b) lie 0-3.2 kJ/mol below their last points, while at
#: 1.6 x the covalent radii (0.99 A for H-H) H2 still holds 383 of its 450 kJ/mol (OH's
#: curve, 07, still rises by 74 kJ/mol from 3 to 4 A: the walls at 4 A bound any choice)
APART_A = 3.0

#: what decides the basins and the unphysical frames (part of a kept run's identity, so
#: that results classified under another rule are not read back as this one's)
CLASSIFICATION_RULE = (f"bonds < {BOND_SCALE} x covalent radii; foreign species also at "
                       f"{BREAKING} x; fragments apart beyond {APART_A} A")

#: equilibrium bond lengths (A) used for the CV switching functions and distance checks
EQUILIBRIUM_BOND = {("H", "H"): 0.74, ("H", "O"): 0.97, ("O", "O"): 1.21}


@dataclass(frozen=True)
class Channel:
    id: str
    reaction: str
    multiplicity: int
    symbols: tuple
    reactants: tuple      # ((species, atoms), ...)
    reactant_bonds: tuple
    products: tuple       # ((species, atoms), ...)
    product_bonds: tuple
    cv1: tuple            # ((i, j), ...) 0-based
    cv2: tuple
    cv_labels: tuple
    cv_pair_lengths: dict = None  # {(i, j): (length in reactant file, in product file)} in A
    reaction_energy_kJ_per_mol: float = None  # isolated products - reactants, data set's level

    @property
    def n_atoms(self) -> int:
        return len(self.symbols)

    @property
    def reactant_species(self) -> set:
        return {s for s, _ in self.reactants}

    @property
    def product_species(self) -> set:
        return {s for s, _ in self.products}

    @property
    def allowed_species(self) -> set:
        """Species a physical frame may contain: reactants, products and the complex of all
        atoms (the transition region)."""
        return self.reactant_species | self.product_species | {hill_formula(self.symbols)}

    def classify(self, distances) -> np.ndarray:
        """Chemistry of each frame from its distance matrix (frames, atoms, atoms) in A.

        Bonds are pairs closer than 1.25 times the sum of their covalent radii (as in
        :func:`~ffpt_ase.forcefields.topology.perceive`). A frame is ``'reactant'`` when its
        fragments are exactly the reactant species (any isomer: an HO2 whose H sits on the
        other O is HO2) *and*, when it has several fragments, every pair of atoms in
        different fragments is at least :data:`APART_A` = 3 A apart (H 2 A from an O of O2
        is not yet H + O2: the pair still binds); ``'product'`` likewise; ``'unphysical'`` when atoms collide (closer than half the
        sum of their covalent radii) or when a fragment is none of the allowed species
        (O + OH from HO2) both with bonds at 1.25 and at :data:`BREAKING` = 1.6 times the
        covalent radii, i.e.
        however its stretched bonds are counted: an H2O whose O-H is stretched to 1.24 A
        (beyond 1.25 x 0.97 A) is a breaking bond, not H + OH; else ``'transition'``.
        """
        d = np.asarray(distances, float)
        numbers = Atoms(list(self.symbols)).numbers
        formulas = fragment_formulas_from_distances(numbers, d)
        loose = fragment_formulas_from_distances(numbers, d, scale=BREAKING)
        collide = close_contacts(numbers, d)
        rad = covalent_radii[numbers]
        bonded = d < BOND_SCALE * (rad[:, None] + rad[None])
        same = bonded | np.eye(len(numbers), dtype=bool)
        for _ in range(max(1, len(numbers).bit_length())):   # transitive closure: fragments
            same = np.einsum("fij,fjk->fik", same.astype(np.int64), same.astype(np.int64)) > 0
        touching = (~same & (d < APART_A)).any(axis=(1, 2))
        reac = tuple(sorted(s for s, _ in self.reactants))
        prod = tuple(sorted(s for s, _ in self.products))
        allowed = self.allowed_species
        out = np.empty(len(d), dtype=object)
        for k, (f, f_loose) in enumerate(zip(formulas, loose)):
            if collide[k] or (any(x not in allowed for x in f)
                              and any(x not in allowed for x in f_loose)):
                out[k] = "unphysical"
            elif f == reac and not (len(f) > 1 and touching[k]):
                out[k] = "reactant"
            elif f == prod and not (len(f) > 1 and touching[k]):
                out[k] = "product"
            else:
                out[k] = "transition"
        return out.astype(str)

    def pair_bond_length(self, i: int, j: int) -> float:
        return EQUILIBRIUM_BOND[tuple(sorted((self.symbols[i], self.symbols[j])))]


@lru_cache(maxsize=1)
def _table() -> dict:
    text = resources.files(__package__).joinpath("channels.json").read_text()
    return json.loads(text)["channels"]


def channel_ids() -> list:
    return list(_table())


def get_channel(cid: str | int) -> Channel:
    """Channel by id: '09', 9, '12a', ... (a bare 6 or 12 is ambiguous and rejected)."""
    key = f"{int(cid):02d}" if str(cid).isdigit() else str(cid).lower()
    table = _table()
    if key not in table:
        raise ValueError(f"unknown reaction channel {cid!r}; choose from {list(table)}")
    c = table[key]
    frag = lambda fs: tuple((f["species"], tuple(f["atoms"])) for f in fs)  # noqa: E731
    return Channel(id=key, reaction=c["reaction"], multiplicity=c["multiplicity"],
                   symbols=tuple(c["symbols"]), reactants=frag(c["reactants"]["fragments"]),
                   reactant_bonds=tuple(tuple(b) for b in c["reactants"]["bonds"]),
                   products=frag(c["products"]),
                   product_bonds=tuple(tuple(b) for b in c["product_bonds"]),
                   cv1=tuple(tuple(p) for p in c["cv1"]),
                   cv2=tuple(tuple(p) for p in c["cv2"]), cv_labels=tuple(c["cv_labels"]),
                   cv_pair_lengths={tuple(map(int, k.split("-"))): tuple(v)
                                    for k, v in c.get("cv_pair_lengths", {}).items()},
                   reaction_energy_kJ_per_mol=c.get("reaction_energy_kJ_per_mol"))


def _map_species(ref: Atoms, target_symbols, target_bonds):
    """Permutation p with ref[p[k]] playing channel atom k: same elements, same bonds."""
    ref_bonds = {tuple(sorted(b)) for b in perceive(ref.numbers, ref.positions).bonds.tolist()}
    sym = ref.get_chemical_symbols()
    n = len(sym)
    for perm in itertools.permutations(range(n)):
        if any(sym[perm[k]] != target_symbols[k] for k in range(n)):
            continue
        mapped = {tuple(sorted((perm[a], perm[b]))) for a, b in target_bonds}
        if mapped == ref_bonds:
            return perm
    raise ValueError(f"no bond-preserving mapping of {ref.get_chemical_formula()} "
                     f"onto {target_symbols} with bonds {target_bonds}")


def reactant_complex(cid, separation: float = 2.5, parameters=None) -> Atoms:
    """Reactant geometry of a channel built from the package's own species geometries.

    Fragments after the first are placed so that the first CV pair that joins two
    fragments is ``separation`` A long, pointing away from the rest of the complex.
    Positions are in Angstrom; atom order is the channel's.
    """
    ch = get_channel(cid)
    return _assemble(ch, ch.reactants, ch.reactant_bonds, separation, parameters)


def product_complex(cid, separation: float = 2.5, parameters=None) -> Atoms:
    """Product geometry of a channel, built like :func:`reactant_complex`."""
    ch = get_channel(cid)
    return _assemble(ch, ch.products, ch.product_bonds, separation, parameters)


def _assemble(ch: Channel, fragments, all_bonds, separation, parameters) -> Atoms:
    from ...forcefields.qforce import QForceParameters
    params = parameters or QForceParameters.load()
    pos = np.zeros((ch.n_atoms, 3))
    owner = {}
    for k, (species, atoms) in enumerate(fragments):
        for a in atoms:
            owner[a] = k
        if len(atoms) == 1:
            continue
        ref = params.reference(species)
        local = {a: i for i, a in enumerate(atoms)}
        bonds = [(local[a], local[b]) for a, b in all_bonds if a in local and b in local]
        perm = _map_species(ref, [ch.symbols[a] for a in atoms], bonds)
        coords = ref.positions[list(perm)]
        pos[list(atoms)] = coords - coords.mean(axis=0)
    placed = {0}
    placed_atoms = set(fragments[0][1])
    pairs = list(ch.cv1) + list(ch.cv2)
    while len(placed) < len(fragments):
        for i, j in pairs:
            fi, fj = owner[i], owner[j]
            if (fi in placed) != (fj in placed):
                if fj in placed:
                    i, j, fi, fj = j, i, fj, fi
                break
        else:  # no CV joins the remaining fragments: put the next one along +x
            fj = next(k for k in range(len(fragments)) if k not in placed)
            i, j = next(iter(placed_atoms)), fragments[fj][1][0]
        center = pos[sorted(placed_atoms)].mean(axis=0)
        direction = pos[i] - center
        if np.linalg.norm(direction) < 1e-6:
            direction = np.array([1.0, 0.0, 0.0])
        direction /= np.linalg.norm(direction)
        atoms_j = list(fragments[fj][1])
        # orient fragment j so that its attacking atom j faces atom i
        frag = pos[atoms_j] - pos[j]
        pos[atoms_j] = frag + pos[i] + separation * direction
        if len(atoms_j) > 1:
            rest = pos[atoms_j].mean(axis=0) - pos[j]
            if np.dot(rest, direction) < 0:  # the fragment points back at i: mirror it
                pos[atoms_j] = pos[j] - (pos[atoms_j] - pos[j])
        placed.add(fj)
        placed_atoms.update(atoms_j)
    return Atoms(symbols=list(ch.symbols), positions=pos - pos.mean(axis=0))


def species_geometry(species: str, parameters=None) -> Atoms:
    """Geometry (A) of an isolated species: a lone atom for 'H'/'O', else the Q-Force
    parameter set's reference (for Table 1, the force field's exact minimum)."""
    if len(Atoms(species)) == 1:
        return Atoms(species, positions=[[0.0, 0.0, 0.0]])
    from ...forcefields.qforce import QForceParameters
    return (parameters or QForceParameters.load()).reference(species)


def reaction_energy(cid, energy_of) -> float:
    """Energy (kJ/mol) of the channel's isolated products minus its isolated reactants, with
    ``energy_of(species) -> eV`` giving each species' energy (called once per species)."""
    from ase import units
    ch = get_channel(cid)
    cache = {}
    for s, _ in ch.reactants + ch.products:
        if s not in cache:
            cache[s] = energy_of(s)
    de = sum(cache[s] for s, _ in ch.products) - sum(cache[s] for s, _ in ch.reactants)
    return float(de / (units.kJ / units.mol))
