"""``python -m worker.cli``: the ``kie-queue`` command without its console script."""

import sys

from .main import main

sys.exit(main())
