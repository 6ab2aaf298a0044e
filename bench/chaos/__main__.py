"""``python -m bench.chaos``: see ``bench.chaos.cli``."""

from .cli import main

raise SystemExit(main())
