"""The chart README lists every value with its current default."""

from __future__ import annotations

import json
import sys

import yaml

from conftest import CHART, HERE

sys.path.insert(0, str(HERE.parent))
import values_table  # noqa: E402


def value_leaves(tree: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out |= value_leaves(v, key + ".")
        else:
            out.add(key)
    return out


def test_readme_table_is_up_to_date() -> None:
    readme = (CHART / "README.md").read_text()
    assert values_table.readme_with_table(readme) == readme, (
        "run: helm/.cache/venv/bin/python helm/values_table.py --write"
    )


def test_every_value_is_documented() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    documented = {path for path, _ in values_table.documented_keys((CHART / "values.yaml").read_text())}
    undocumented = {
        leaf
        for leaf in value_leaves(values)
        if not any(leaf == d or leaf.startswith(d + ".") for d in documented)
    }
    assert undocumented == set(), f"add a `# --` comment above: {sorted(undocumented)}"


def test_every_documented_value_is_in_the_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    for path, _ in values_table.documented_keys((CHART / "values.yaml").read_text()):
        node = schema
        for part in path.split("."):
            assert part in node.get("properties", {}), f"{path} is missing from values.schema.json"
            node = node["properties"][part]
