"""``python -m testkit.load.locust [locust options]``: Locust with the kit's agent users loaded."""

from __future__ import annotations

import sys
from pathlib import Path

from locust.main import main

if __name__ == "__main__":
    sys.argv = ["locust", "-f", str(Path(__file__).with_name("locustfile.py")), *sys.argv[1:]]
    sys.exit(main())
