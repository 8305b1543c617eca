"""``python -m svdd`` (and ``torchrun ... -m svdd sample ...``): the `svdd` command."""

import sys

from .cli import main

sys.exit(main())
