"""``bandsyctl`` (also the kubectl plugin ``kubectl-bandsy``)."""

from __future__ import annotations

import argparse
import sys

from .branches import InvalidBranchNameError, classify

EXIT_FAILURE = 1
EXIT_USAGE = 2


def _check_branch(args: argparse.Namespace) -> int:
    try:
        policy = classify(args.name)
    except InvalidBranchNameError as err:
        print(f"invalid branch name: {err}", file=sys.stderr)
        print(
            "CI/CD ignores this branch and it must not be merged into develop or master.",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    print(policy.describe())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bandsyctl", description="Bandsy platform command line")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser(
        "check-branch", help="validate a branch name (SPEC §2) and show what CI/CD does for it"
    )
    check.add_argument("name")
    check.set_defaults(run=_check_branch)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(args.run(args))
