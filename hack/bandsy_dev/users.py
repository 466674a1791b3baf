"""The people of SPEC §10 as real users of the local API server (its static token file).

Each has a random bearer token per cluster and a kubeconfig of its own, published in
``cluster.env`` as ``BANDSY_<ROLE>_USER``, ``BANDSY_<ROLE>_TOKEN`` and ``BANDSY_<ROLE>_KUBECONFIG``.
What they may do is not decided here: ``deploy/samples/rights.yaml`` binds the shipped roles to
these names and groups, as a cluster admin would.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

import yaml


@dataclass(frozen=True)
class User:
    role: str  # the cluster.env prefix: BANDSY_<role>_...
    name: str
    groups: tuple[str, ...]

    @property
    def env_keys(self) -> tuple[str, str, str]:
        prefix = f"BANDSY_{self.role}"
        return (f"{prefix}_USER", f"{prefix}_TOKEN", f"{prefix}_KUBECONFIG")


# A developer of the team owning the samples' web and api; a devops engineer who may promote into
# preprod and production; a developer of another team; the GitHub workflows' deploy identity.
DEVELOPER = User("DEVELOPER", "dev-alice", ("bandsy-developers", "team-checkout"))
PROMOTER = User("PROMOTER", "ops-bob", ("bandsy-devops",))
OTHER_TEAM = User("OTHER_TEAM", "dev-carol", ("bandsy-developers", "team-search"))
CI = User("CI", "bandsy-ci", ("bandsy-ci",))
USERS = (DEVELOPER, PROMOTER, OTHER_TEAM, CI)
ENV_KEYS = tuple(key for user in USERS for key in user.env_keys)


def new_tokens() -> dict[str, str]:
    """A fresh bearer token per user name."""
    return {user.name: secrets.token_urlsafe(32) for user in USERS}


def token_file_lines(tokens: dict[str, str]) -> str:
    """Lines of kube-apiserver's ``--token-auth-file``: token,user,uid,"group1,group2"."""
    return "".join(
        f'{tokens[user.name]},{user.name},{user.name},"{",".join(user.groups)}"\n' for user in USERS
    )


def write_kubeconfig(admin_kubeconfig: Path, path: Path, user: str, token: str) -> Path:
    """The admin's kubeconfig (same cluster and CA) for another identity, by its token."""
    config = yaml.safe_load(admin_kubeconfig.read_text())
    config["users"] = [{"name": user, "user": {"token": token}}]
    for context in config["contexts"]:
        context["context"]["user"] = user
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


def variables(tokens: dict[str, str], kubeconfigs: dict[str, Path]) -> dict[str, str]:
    """The cluster.env lines of every user."""
    values: dict[str, str] = {}
    for user in USERS:
        name_key, token_key, kubeconfig_key = user.env_keys
        values[name_key] = user.name
        values[token_key] = tokens[user.name]
        values[kubeconfig_key] = str(kubeconfigs[user.name])
    return values
