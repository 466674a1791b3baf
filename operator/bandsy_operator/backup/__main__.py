"""``python -m bandsy_operator.backup``: one backup of the service database the PG* variables
name (the backup CronJob's command); ``... backup restore``: one restore into it (SPEC §11)."""

import sys

from . import job, restore

sys.exit(restore.main() if sys.argv[1:] == ["restore"] else job.main())
