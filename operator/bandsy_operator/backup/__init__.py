"""Logical backups of a service's PostgreSQL database (SPEC §11): what the backup Job runs.

``manifest`` and ``retention`` are pure; ``store`` talks to S3; ``job`` is the program the
CronJob runs (``python -m bandsy_operator.backup``), in the operator's own image.
"""
