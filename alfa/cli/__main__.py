"""`python -m alfa.cli ...`: what `alfa train` re-runs itself as under `accelerate launch`."""

import sys

from alfa.cli import main

sys.exit(main())
