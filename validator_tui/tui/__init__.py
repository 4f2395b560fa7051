"""The operator's console: a Textual app that embeds the engine (the only Textual importer)."""
