"""The browser view of a running engine (`validator-tui serve`, the `web` extra)."""
