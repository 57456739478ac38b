"""Allow ``python -m itop_tui``."""

from itop_tui.cli import main

raise SystemExit(main())
