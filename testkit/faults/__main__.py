"""Entry point of ``python -m testkit.faults`` (see :mod:`testkit.faults.bench`)."""

import sys

from testkit.faults.bench import main

sys.exit(main())
