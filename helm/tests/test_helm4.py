"""The chart also works with Helm 4, through its Go SDK (helm-python-sdk).

helm/test.sh drives the Helm 3.17 CLI; this module checks that Helm 4 lints
the chart, installs it (client-side dry run, hooks and NOTES included), and
rejects the same bad values.
"""

from __future__ import annotations

import helm_python as helm4
import kubernetes_validate
import pytest
import yaml

from conftest import CHART, SCENARIOS, VALUES_DIR


def scenario_values(scenario: str) -> dict:
    return yaml.safe_load((VALUES_DIR / f"{scenario}.yaml").read_text()) or {}


def test_sdk_is_helm_4() -> None:
    assert helm4.helm_sdk_version().startswith("v4.")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_helm4_lint_strict_is_clean(scenario: str) -> None:
    report = helm4.lint(str(CHART), scenario_values(scenario), strict=True, namespace="observability")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_helm4_dry_run_install_renders_valid_objects(scenario: str) -> None:
    release = helm4.Config(namespace="observability").install(
        str(CHART), "xr", scenario_values(scenario), namespace="observability", dry_run="client"
    )
    docs = [d for d in yaml.safe_load_all(release["manifest"]) if d]
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "ConfigMap"} <= kinds
    for d in docs:
        if d["kind"] != "ServiceMonitor":  # a CRD: no bundled schema
            kubernetes_validate.validate(d, "1.33.0", strict=True)
    assert "xr-xray-collector.observability.svc:4317" in release["notes"]


def test_helm4_rejects_a_misspelt_key() -> None:
    report = helm4.lint(str(CHART), {"collector": {"replicaCont": 3}}, strict=True)
    assert any("replicaCont" in e for e in report["errors"]), report
    with pytest.raises(helm4.HelmError, match="replicaCont"):
        helm4.Config(namespace="observability").install(
            str(CHART), "xr", {"collector": {"replicaCont": 3}}, namespace="observability", dry_run="client"
        )


def test_helm4_reports_inconsistent_values() -> None:
    with pytest.raises(helm4.HelmError, match="set secrets.postgresUrl"):
        helm4.Config(namespace="observability").install(
            str(CHART), "xr", {"config": {"storage": {"backend": "postgres"}}},
            namespace="observability", dry_run="client",
        )
