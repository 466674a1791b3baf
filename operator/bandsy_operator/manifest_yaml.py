"""YAML for manifests that Kubernetes tools read back.

PyYAML writes YAML 1.1, which leaves a string such as ``1e5`` unquoted because in 1.1 an
exponent needs a dot and a sign. kubectl's reader (go-yaml) takes it for a number, so a
service named ``1e5`` would come back as a float label and fail to decode. The dumper here also
quotes every string that go-yaml would resolve as a number.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import yaml


class _ManifestDumper(yaml.SafeDumper):
    pass


# go-yaml's plain-scalar float syntax (yaml.v2 resolve.go, yamlStyleFloat).
_ManifestDumper.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$"),
    list("-+.0123456789"),
)


def dump_all(documents: Iterable[Any]) -> str:
    """A multi-document YAML stream, keys in the order given."""
    return yaml.dump_all(documents, Dumper=_ManifestDumper, sort_keys=False)
