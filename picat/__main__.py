"""`python -m picat` is the `picat` command."""

import sys

from picat.cli import main

sys.exit(main())
