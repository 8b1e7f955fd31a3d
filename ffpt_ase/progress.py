"""Progress display for long jobs (tqdm bars with rate and ETA; plain log lines when the
output is not a terminal, e.g. in CI logs)."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm


def progress(total=None, initial=0, unit="it", desc="", disable=False, unit_scale=False,
             **kwargs):
    """A tqdm bar; in non-interactive output it prints a line at most every 10 s (callers
    set postfixes with ``refresh=False`` so they do not bypass that limit).
    ``unit_scale=True`` shows large counts as 20.0k."""
    interactive = sys.stderr.isatty()
    return tqdm(total=total, initial=initial, unit=unit, desc=desc, disable=disable,
                mininterval=0.1 if interactive else 10.0, dynamic_ncols=True,
                unit_scale=unit_scale, **kwargs)
