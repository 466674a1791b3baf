"""``python -m bandsy_operator.backup``: one backup of the service database the PG* variables
name (the backup CronJob's command)."""

import sys

from .job import main

sys.exit(main())
