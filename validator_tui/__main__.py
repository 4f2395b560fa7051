"""`python -m validator_tui` runs the command-line interface."""

from validator_tui.cli import main

raise SystemExit(main())
