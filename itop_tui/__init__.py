"""itop-tui: a keyboard-first terminal console for operating IT infrastructure over SSH."""

__version__ = "0.1.0"
