"""`python -m berth.cli` runs the `berth` command."""

import sys

from berth.cli.main import main

sys.exit(main())
