"""``python -m lab``: the same as the ``ibcm-lab`` command."""

import sys

try:
    from lab.cli import main
except KeyboardInterrupt:  # Ctrl-C while Python is still importing the lab
    sys.stderr.write("ibcm-lab: interrupted\n")
    sys.exit(130)

sys.exit(main())
