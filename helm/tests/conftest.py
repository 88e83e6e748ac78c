"""Shared helpers of the chart tests: rendering with the real Helm CLI."""

from __future__ import annotations

import functools
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
CHART = HERE.parent / "xray"
VALUES_DIR = HERE / "values"
REPO_ROOT = Path(os.environ.get("REPO_ROOT", HERE.parent.parent))
HELM = os.environ.get("HELM_BIN", "helm")

# Kubernetes versions every manifest must validate against.
KUBE_VERSIONS = ["1.29.0", "1.30.0", "1.31.0", "1.32.0", "1.33.0"]

# The scenarios of the issue, each a values file in tests/values.
SCENARIOS = [
    "default",
    "external-clickhouse",
    "bundled-clickhouse",
    "autoscaling",
    "postgres",
    "full",
    "all-config",
]


@dataclass
class Result:
    """Outcome of one helm command."""

    code: int
    stdout: str
    stderr: str


def helm(*args: str) -> Result:
    """Runs the Helm CLI and returns its exit code and output."""
    p = subprocess.run([HELM, *args], capture_output=True, text=True, check=False)
    return Result(p.returncode, p.stdout, p.stderr)


def values_file(scenario: str) -> str:
    return str(VALUES_DIR / f"{scenario}.yaml")


def render(scenario: str, *extra: str, kube_version: str = "1.33.0") -> list[dict]:
    """`helm template` of one scenario; fails the test when Helm fails."""
    return [d for d in yaml.safe_load_all(_render_text(scenario, extra, kube_version)) if d]


@functools.lru_cache(maxsize=None)
def _render_text(scenario: str, extra: tuple[str, ...], kube_version: str) -> str:
    r = helm(
        "template",
        "xr",
        str(CHART),
        "--namespace",
        "observability",
        "--kube-version",
        kube_version,
        "-f",
        values_file(scenario),
        *extra,
    )
    assert r.code == 0, f"helm template {scenario} failed:\n{r.stderr}"
    return r.stdout


def find(docs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [
        d
        for d in docs
        if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]


def one(docs: list[dict], kind: str, name: str) -> dict:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="session")
def xray_bin() -> str:
    path = os.environ.get("XRAY_BIN", "")
    assert path and os.access(path, os.X_OK), (
        f"XRAY_BIN={path!r} must name a built xray binary (helm/test.sh sets it)"
    )
    return path
