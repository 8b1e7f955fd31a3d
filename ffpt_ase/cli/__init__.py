"""Command-line interface (``ffpt-ase``)."""
