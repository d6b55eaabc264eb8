"""``python -m sarheight.cli``: the ``sarheight`` command."""

import sys

from . import main

sys.exit(main())
