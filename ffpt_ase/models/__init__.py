"""Shipped pre-trained FFPT models (``NAME.pt`` with ``NAME.json`` provenance); see
:mod:`ffpt_ase.pretrained`."""
