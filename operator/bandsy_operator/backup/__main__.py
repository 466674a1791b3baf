"""``python -m bandsy_operator.backup``: one backup of the service database the PG* variables
name (the backup CronJob's command); ``... backup restore``: one restore into it, ``... backup
mirror``: one mirror (SPEC §11)."""

import sys

from . import job, restore

COMMANDS = {
    (): job.main,
    ("restore",): restore.main,
    ("mirror",): restore.mirror_main,
}

sys.exit(COMMANDS[tuple(sys.argv[1:])]())
