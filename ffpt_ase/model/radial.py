"""Radial basis and smooth cutoff for edge features (distances in Angstrom)."""

from __future__ import annotations

import math

import torch
from torch import nn


class PolynomialCutoff(nn.Module):
    """Smooth envelope f(r) that is 1 at r = 0 and goes to 0 at r = r_c with its first
    ``p`` derivatives continuous (Klicpera et al., DimeNet, ICLR 2020):

    f(x) = 1 - (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) - p(p+1)/2 x^(p+2),  x = r / r_c,
    and 0 for r >= r_c, so energies and forces are continuous when neighbours cross r_c.
    """

    def __init__(self, cutoff: float, p: int = 6):
        super().__init__()
        self.cutoff = float(cutoff)
        self.p = int(p)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        x = r / self.cutoff
        p = self.p
        env = (1.0 - 0.5 * (p + 1) * (p + 2) * x**p + p * (p + 2) * x ** (p + 1)
               - 0.5 * p * (p + 1) * x ** (p + 2))
        return torch.where(x < 1.0, env, torch.zeros_like(env))


class BesselBasis(nn.Module):
    """sqrt(2/r_c) sin(n pi r / r_c) / r, n = 1..n_basis (finite at r -> 0 with a floor)."""

    def __init__(self, cutoff: float, n_basis: int = 20):
        super().__init__()
        self.cutoff = float(cutoff)
        self.register_buffer("freq", torch.arange(1, n_basis + 1, dtype=torch.float64) * math.pi
                             / self.cutoff)
        self.prefactor = math.sqrt(2.0 / self.cutoff)

    def _apply(self, fn, recurse=True):
        """Dtype conversions leave the frequencies in float64 (they follow the device), so
        a model taken to float32 and back computes what a float64 model computes."""
        freq = self.freq
        super()._apply(fn, recurse)
        self.freq = freq.to(device=self.freq.device, dtype=torch.float64)
        return self

    @property
    def n_basis(self) -> int:
        return self.freq.numel()

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        r = r.unsqueeze(-1)
        # sin(k r)/r -> k as r -> 0; clamp keeps coincident atoms finite
        return self.prefactor * torch.sin(self.freq.to(r.dtype) * r) / r.clamp_min(1e-4)
