"""``python -m kiesim``: run the simulator (see ``kiesim.cli``)."""

import sys

from .cli import main

sys.exit(main())
