"""``python -m sipe``: the same command-line tool as ``sipe``."""

import sys

from sipe.cli import main

sys.exit(main())
