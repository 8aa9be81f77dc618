"""How this invocation prints (set once by the ``microseg`` group; read by every console it makes)."""

from __future__ import annotations


class Style:
    """``--no-color`` (``NO_COLOR`` in the environment works too: rich reads it)."""

    no_color = False
