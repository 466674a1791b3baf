"""Strings that kubectl's YAML reader would take for numbers stay strings."""

from __future__ import annotations

import pytest
import yaml

from bandsy_operator.manifest_yaml import dump_all


@pytest.mark.parametrize(
    "value", ["1e5", "12e4", "7E35", "1e+5", "2.5e3", ".5e1", "0x1f", "1_000", "10", "true", "on"]
)
def test_number_like_strings_are_quoted(value: str) -> None:
    text = dump_all([{"metadata": {"labels": {"run": value}}}])
    assert f"run: '{value}'" in text
    assert yaml.safe_load(text)["metadata"]["labels"]["run"] == value


def test_plain_strings_and_numbers_stay_plain() -> None:
    text = dump_all([{"name": "web-1e5", "replicas": 3, "port": 8080}, {"kind": "Secret"}])
    assert text == "name: web-1e5\nreplicas: 3\nport: 8080\n---\nkind: Secret\n"
