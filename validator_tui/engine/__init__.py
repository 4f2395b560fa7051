"""The validator engine: no UI imports here, ever (a test enforces it)."""
