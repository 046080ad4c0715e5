"""`python -m kdp ...`: the `kdp` command, from a source tree that is not installed."""
import sys

from kdp.cli import main

sys.exit(main())
