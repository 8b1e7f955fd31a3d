"""NewtonNet: Newtonian equivariant message passing (Haghighatlari et al., Digital Discovery 1,
333 (2022)), written for this package in plain PyTorch.

Every atom i carries an invariant feature vector a_i (F), and two equivariant vector
features, a latent "force" f_i and "displacement" d_i (3 x F), both zero at the start.
With e_ij the radial basis of r_ij times a smooth cutoff and u_ij = (x_j - x_i) / r_ij,
one interaction layer computes

    m_ij  = phi_a(a_i) * phi_a(a_j) * (W_e e_ij)               (invariant, symmetric in i, j)
    a_i  += sum_j c_ij phi_m(m_ij)                             (invariant update)
    F_ij  = c_ij phi_F(m_ij) u_ij,  f_i += sum_j F_ij           (pairwise "forces", Newton's
                                                                third law: F_ji = -F_ij)
    d_i  += phi_u(a_i) * (sum_j F_ij) + sum_j c_ij phi_d(m_ij) * d_j
                                                               (displacements along forces)
    a_i  -= phi_E(a_i) * sum_xyz(f_i * d_i)                    ("work" -f.d feeds the energy)

where phi_* are two-layer perceptrons (SiLU), * is the element-wise product over the
feature channel and c_ij the smooth cutoff envelope, which makes every edge's contribution
vanish continuously (with its derivatives) at the cutoff. The atomic energy is a two-layer
perceptron of the final a_i.

Efficiency: because m_ij is symmetric, every edge perceptron is evaluated once per
unordered pair (i < j) and its result is sent to both atoms (with u_ji = -u_ij); the three
edge perceptrons share one fused first layer. Nothing here depends on the batch layout: a
batch is a set of atoms with a half edge list.
"""

from __future__ import annotations

import torch
from torch import nn

from .radial import BesselBasis, PolynomialCutoff


def mlp(n_in: int, n_out: int, act: nn.Module, bias: bool = True) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, n_in, bias=bias), act, nn.Linear(n_in, n_out, bias=bias))


# Moving features between atoms and unordered edges (i < j): gathers by index, sums with
# ``index_add``. Plain functions of tensors, so the network compiles with TorchScript
# (``ffpt-ase export``). (Incidence-matrix products were tried for single small molecules
# and were not measurably faster on CPU.)

def gather(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Atom features (n, ...) -> edge features (E, ...) of the atoms ``index`` (E,)
    (``index_select``: one contiguous copy, cheaper than advanced indexing)."""
    return x.index_select(0, index)


def sum_to_atoms(to_i: torch.Tensor, to_j: torch.Tensor, ei: torch.Tensor, ej: torch.Tensor,
                 n: int, sign_j: float = 1.0) -> torch.Tensor:
    """Atom sums of edge terms: ``to_i`` goes to atom i of each edge, ``sign_j`` * ``to_j``
    to atom j."""
    shape = [n] + list(to_i.shape[1:])
    out = to_i.new_zeros(shape)
    return out.index_add(0, ei, to_i).index_add(0, ej, to_j, alpha=sign_j)


def sum_directed(w: torch.Tensor, unit: torch.Tensor, ei: torch.Tensor, ej: torch.Tensor,
                 n: int) -> torch.Tensor:
    """sum_j w_ij u_ij for every atom, (n, 3, F), from edge weights w (E, F) and unit vectors
    u_ij (E, 3); u_ji = -u_ij (subtracted in the sum: no negated copy of the (E, 3, F)
    tensor)."""
    Fij = w.unsqueeze(1) * unit.unsqueeze(-1)                       # (E, 3, F), i -> j
    return sum_to_atoms(Fij, Fij, ei, ej, n, sign_j=-1.0)


class InteractionBlock(nn.Module):
    """One Newtonian message-passing layer (see module docstring).

    ``edge_filter`` is W_e e_ij, computed for all layers at once by :class:`NewtonNet`.
    """

    def __init__(self, n_features: int, act: nn.Module):
        super().__init__()
        F = n_features
        self.node_message = mlp(F, F, act)                  # phi_a
        self.edge_hidden = nn.Linear(F, 3 * F)              # first layers of phi_m, phi_F, phi_d
        self.edge_out_m = nn.Linear(F, F)
        self.edge_out_F = nn.Linear(F, F)
        self.edge_out_d = nn.Linear(F, F, bias=False)
        self.node_disp = mlp(F, F, act)                     # phi_u
        self.node_energy = mlp(F, F, act)                   # phi_E
        self.act = act
        self.n_features = F

    def forward(self, a, f, d, edge_filter, envelope, unit, ei, ej, first: bool = False):
        """One layer on atom features a (n, F), f and d (n, 3, F); edges ``ei < ej`` with
        their filter (E, F), envelope (E, 1) and unit vectors i -> j (E, 3)."""
        n = a.shape[0]
        pa = self.node_message(a)
        m = gather(pa, ei) * gather(pa, ej) * edge_filter       # once per unordered pair
        h = self.act(self.edge_hidden(m)).split(self.n_features, dim=-1)
        hm, hF, hd = h[0], h[1], h[2]
        # every edge output is multiplied by the cutoff envelope c(r_ij) (E, 1), so that an
        # edge's contribution goes smoothly to zero at the cutoff despite the biases
        msg = self.edge_out_m(hm) * envelope
        a = a + sum_to_atoms(msg, msg, ei, ej, n)
        df = sum_directed(self.edge_out_F(hF) * envelope, unit, ei, ej, n)
        f = f + df
        d = d + self.node_disp(a).unsqueeze(1) * df
        if not first:  # d is still zero in the first layer
            wd = (self.edge_out_d(hd) * envelope).unsqueeze(1)
            d = d + sum_to_atoms(wd * gather(d, ej), wd * gather(d, ei), ei, ej, n)
        a = a - self.node_energy(a) * (f * d).sum(dim=1)
        return a, f, d


class NewtonNet(nn.Module):
    """NewtonNet representation + atomic-energy head.

    ``forward(numbers_index, positions, edge_i, edge_j, edge_shift)`` returns the (unscaled)
    atomic energies, shape (atoms,). ``numbers_index`` indexes the model's element list;
    edges are unordered pairs (i < j, each once), ``edge_shift`` the Cartesian lattice shift
    added to x_j (zeros for molecules).
    """

    def __init__(self, n_elements: int, n_features: int = 128, n_interactions: int = 3,
                 n_basis: int = 20, cutoff: float = 5.0, cutoff_p: int = 6):
        super().__init__()
        act = nn.SiLU()
        self.embedding = nn.Embedding(n_elements, n_features)
        self.radial = BesselBasis(cutoff, n_basis)
        self.envelope = PolynomialCutoff(cutoff, cutoff_p)
        # W_e of every layer in one matrix: one matmul per call instead of one per layer
        self.edge_filters = nn.Linear(n_basis, n_interactions * n_features, bias=False)
        self.interactions = nn.ModuleList(
            [InteractionBlock(n_features, act) for _ in range(n_interactions)])
        self.readout = nn.Sequential(nn.Linear(n_features, n_features // 2), act,
                                     nn.Linear(n_features // 2, 1))
        self.n_features = n_features
        self.cutoff = float(cutoff)

    def forward(self, species, positions, edge_i, edge_j, edge_shift):
        vec = positions[edge_j] + edge_shift - positions[edge_i]
        r = torch.sqrt((vec * vec).sum(-1) + 1e-12)        # finite gradient at r = 0
        unit = vec / r.unsqueeze(-1)
        env = self.envelope(r).unsqueeze(-1)
        rbf = self.radial(r) * env
        a = self.embedding(species)
        n = a.shape[0]
        f = a.new_zeros(n, 3, self.n_features)
        d = a.new_zeros(n, 3, self.n_features)
        filters = self.edge_filters(rbf).split(self.n_features, dim=-1)
        for k, block in enumerate(self.interactions):
            a, f, d = block(a, f, d, filters[k], env, unit, edge_i, edge_j, first=(k == 0))
        return self.readout(a).squeeze(-1)
