"""``python -m treadle_conformance``: the same as ``treadle-conformance``."""

import sys

from .cli import main

sys.exit(main())
