"""The one way the CLI makes a rich Console: markup off.

Everything the commands print carries user text (study and config names, paths, storage URLs,
error messages, trial fail reasons). With rich's markup on, a name like `[/x]` is read as a
closing tag and the print fails after the work is done, and `[bold]` in a name vanishes. Styles
are given as `style=` or `rich.text.Text` instead, never inside the printed string.
"""

from __future__ import annotations

from rich.console import Console


def make_console(*, stderr: bool = False, soft_wrap: bool = False) -> Console:
    """A Console that prints strings exactly as given (table titles and cells included)."""
    return Console(stderr=stderr, soft_wrap=soft_wrap, markup=False)
