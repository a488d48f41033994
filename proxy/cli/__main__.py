"""``python -m proxy.cli``: the same as the ``tokenmeter`` command."""

import sys

from proxy.cli import main

sys.exit(main())
