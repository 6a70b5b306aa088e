"""``python -m lighthouse.server --data-dir DIR ...``: the same as ``lighthouse serve``."""

import sys

from lighthouse.cli_serve import main

sys.exit(main(["serve", *sys.argv[1:]]))
