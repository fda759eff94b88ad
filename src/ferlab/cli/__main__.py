"""``python -m ferlab.cli``: the same as ``ferlab`` and ``python -m ferlab``."""

import sys

from . import main

sys.exit(main())
