"""Hydrogen combustion (Guan et al., Sci. Data 9, 215 (2022)): the 19 reaction channels,
their PLUMED decks, the chemistry of reactant and product basins, the monitor of unphysical
species, and the workflows the demo and the benchmark share."""
