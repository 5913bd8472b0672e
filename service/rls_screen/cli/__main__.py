"""``python -m rls_screen.cli`` runs the console script (used by tests that need a real process)."""

import sys

from rls_screen.cli import main

sys.exit(main())
