"""`python -m resnas`: the command line."""

import sys

from .cli import main

sys.exit(main())
