"""``python -m gapy``: the ``gapy`` command line."""

import sys

from .cli import main

sys.exit(main())
