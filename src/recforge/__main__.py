"""``python -m recforge`` runs the command line."""

import sys

from recforge.cli import main

sys.exit(main())
