"""validator-tui: a Platform Network validator engine and its terminal console."""

__version__ = "0.1.0"
