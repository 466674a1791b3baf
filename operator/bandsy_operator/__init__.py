"""Bandsy platform operator: the team's devops conventions as a Kubernetes operator."""

__version__ = "0.1.0"
