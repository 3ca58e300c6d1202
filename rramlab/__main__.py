"""``python -m rramlab`` is the ``rramlab`` command."""

import sys

from rramlab.app.cli import main

sys.exit(main())
