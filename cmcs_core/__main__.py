"""Entry point: python -m cmcs_core ..."""
import sys

from cmcs_core.cli import main

sys.exit(main())
