"""``python -m sarheight``: the ``sarheight`` command."""

import sys

from .cli import main

sys.exit(main())
