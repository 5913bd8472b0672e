"""``python -m rls_screen`` runs the console script."""

import sys

from rls_screen.cli import main

sys.exit(main())
