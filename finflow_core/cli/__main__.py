"""``python -m finflow_core.cli``: the same as the ``finflow`` command."""

import sys

from finflow_core.cli import main

sys.exit(main())
