"""The chart lints, renders valid Kubernetes objects, and rejects bad values."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
import kubernetes_validate
from kubernetes_validate.utils import SchemaNotFoundError

from conftest import CHART, KUBE_VERSIONS, SCENARIOS, find, helm, one, render, values_file

# Kinds that are CustomResourceDefinitions, not built into Kubernetes: no
# bundled schema exists for them, so they (and only they) skip validation.
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_lint_strict(scenario: str) -> None:
    r = helm("lint", "--strict", str(CHART), "-f", values_file(scenario))
    assert r.code == 0, r.stdout + r.stderr
    assert "0 chart(s) failed" in r.stdout


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_manifests_validate_against_kubernetes_schemas(scenario: str, kube_version: str) -> None:
    docs = render(scenario, kube_version=kube_version)
    assert docs, "nothing rendered"
    failures = []
    validated = 0
    for d in docs:
        what = f"{d['kind']}/{d['metadata']['name']}"
        if (d["apiVersion"], d["kind"]) in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(d, kube_version, strict=True)
            validated += 1
        except SchemaNotFoundError as e:
            failures.append(f"{what}: {e.message}")
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            failures.append(f"{what}: {path}: {e.message}")
    assert not failures, "\n".join(failures)
    assert validated >= 6


def test_the_validator_rejects_a_broken_manifest() -> None:
    # Guards the test above against passing vacuously.
    d = one(render("default"), "Deployment", "xr-xray-api")
    d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "eighty"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(d, "1.33.0", strict=True)
    d = one(render("default"), "Deployment", "xr-xray-api")
    d["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGett"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(d, "1.33.0", strict=True)
    with pytest.raises(SchemaNotFoundError):
        kubernetes_validate.validate({"apiVersion": "apps/v1", "kind": "Deploymnt"}, "1.33.0", strict=True)


def test_crds_are_the_only_skipped_kinds() -> None:
    # The full scenario renders ServiceMonitors; everything else is built in.
    docs = render("full")
    kinds = {(d["apiVersion"], d["kind"]) for d in docs}
    assert ("monitoring.coreos.com/v1", "ServiceMonitor") in kinds
    assert not {k for k in kinds if "monitoring.coreos.com" in k[0]} - CRD_KINDS


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "colector.replicaCount=3"], "colector"),
        (["--set", "clickhouse.external.urll=http://x:8123"], "urll"),
        (["--set", "config.storage.clickhouse.ttl_day=3"], "ttl_day"),
        (["--set", "config.pipeline.batchMaxRows=10"], "batchMaxRows"),
        (["--set", "config.storage.backend=sqlite"], "backend"),
        (["--set", "config.log.format=yaml"], "format"),
        (["--set", "collector.replicaCount=many"], "replicaCount"),
        (["--set", "config.pipeline.batch_max_rows=-1"], "batch_max_rows"),
        (["--set", "clickhouse.bundled.user=default"], "user"),
        (["--set", "api.podDisruptionBudget.maxUnavailable=half"], "maxUnavailable"),
        (["--set", "config.auth.cache_ttl_ms=6000"], "cache_ttl_ms"),
        (["--set", "config.auth.rate_limit.burst=0"], "burst"),
        (["--set", "config.auth.rate_limit.requests_per_sec=-1"], "requests_per_sec"),
        (["--set", "config.auth.ratelimit.burst=5"], "ratelimit"),
    ],
)
def test_bad_values_fail_with_a_message_naming_the_key(args: list[str], message: str) -> None:
    for command in (["template", "xr", str(CHART)], ["lint", "--strict", str(CHART)]):
        r = helm(*command, *args)
        assert r.code != 0, f"helm {command[0]} accepted {args}"
        out = r.stdout + r.stderr
        assert message in out, out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--set", "clickhouse.bundled.enabled=true", "--set", "config.storage.backend=postgres",
             "--set", "secrets.postgresUrl=postgres://a@b/c"],
            "clickhouse.bundled.enabled is true but config.storage.backend is not clickhouse",
        ),
        (["--set", "config.storage.backend=postgres"], "set secrets.postgresUrl"),
        (["--set", "config.sinks.postgres.enabled=true"], "set secrets.sinkPostgresUrl"),
        (["--set", "clickhouse.external.url="], "set clickhouse.external.url"),
        (
            ["--set", "collector.autoscaling.enabled=true", "--set", "collector.autoscaling.minReplicas=5",
             "--set", "collector.autoscaling.maxReplicas=2"],
            "maxReplicas must be at least",
        ),
        (["--set", "api.ingress.enabled=true"], "api.ingress.hosts"),
    ],
)
def test_inconsistent_values_fail_with_advice(args: list[str], message: str) -> None:
    r = helm("template", "xr", str(CHART), *args)
    assert r.code != 0
    assert message in r.stderr, r.stderr


# --- What the manifests promise ------------------------------------------------


def workloads(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "Job")]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_container_is_locked_down_and_bounded(scenario: str) -> None:
    docs = render(scenario)
    for w in workloads(docs):
        pod = w["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, w["metadata"]["name"]
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        for c in pod["containers"]:
            sc = c["securityContext"]
            where = f"{w['metadata']['name']}/{c['name']}"
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert c["resources"]["requests"]["memory"], where
            assert c["resources"]["limits"]["memory"], where


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_collector_and_api_run_one_image_with_their_subcommand(scenario: str) -> None:
    docs = render(scenario)
    collector = one(docs, "Deployment", "xr-xray-collector")["spec"]["template"]["spec"]["containers"][0]
    api = one(docs, "Deployment", "xr-xray-api")["spec"]["template"]["spec"]["containers"][0]
    assert collector["image"] == api["image"]
    assert collector["args"][:3] == ["collector", "--config", "/etc/xray/xray.toml"]
    assert api["args"][:3] == ["dashboard-api", "--config", "/etc/xray/xray.toml"]
    assert {p["containerPort"] for p in collector["ports"]} == {4317, 4318, 8080}
    assert {p["containerPort"] for p in api["ports"]} == {8080}
    for c in (collector, api):
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_probes_and_service_ports_name_real_container_ports(scenario: str) -> None:
    docs = render(scenario)
    for w in workloads(docs):
        pod = w["spec"]["template"]["spec"]
        for c in pod["containers"]:
            names = {p["name"] for p in c.get("ports", [])}
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                port = c.get(probe, {}).get("httpGet", {}).get("port")
                if port is not None:
                    assert port in names, f"{w['metadata']['name']} {probe} port {port}"
    for svc in find(docs, "Service"):
        selector = svc["spec"]["selector"]
        pods = [
            w for w in workloads(docs)
            if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert pods, f"Service {svc['metadata']['name']} selects nothing"
        names = {p["name"] for w in pods for c in w["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in names, f"Service {svc['metadata']['name']} port {port['name']}"
    for sm in find(docs, "ServiceMonitor"):
        svc = one(docs, "Service", sm["metadata"]["name"])
        assert sm["spec"]["endpoints"][0]["port"] in {p["name"] for p in svc["spec"]["ports"]}


def test_default_points_at_external_clickhouse_with_a_pre_install_migration() -> None:
    docs = render("default")
    assert not find(docs, "StatefulSet")
    job = one(docs, "Job", "xr-xray-migrate")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][0] == "migrate"
    # Before install only hook resources exist: the Job has its own ConfigMap
    # and Secret, created before it.
    for kind in ("ConfigMap", "Secret"):
        hooked = one(docs, kind, "xr-xray-migrate")["metadata"]["annotations"]
        assert hooked["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert int(hooked["helm.sh/hook-weight"]) < int(job["metadata"]["annotations"]["helm.sh/hook-weight"])
    assert not find(docs, "HorizontalPodAutoscaler")
    assert one(docs, "Deployment", "xr-xray-collector")["spec"]["replicas"] == 2
    assert find(docs, "PodDisruptionBudget", "xr-xray-collector")
    assert find(docs, "PodDisruptionBudget", "xr-xray-api")
    assert not find(docs, "Ingress") and not find(docs, "ServiceMonitor")


def test_bundled_clickhouse_is_a_statefulset_the_config_points_at() -> None:
    docs = render("bundled-clickhouse")
    sts = one(docs, "StatefulSet", "xr-xray-clickhouse")
    claim = sts["spec"]["volumeClaimTemplates"][0]["spec"]
    assert claim["resources"]["requests"]["storage"] == "20Gi"
    assert claim["storageClassName"] == "standard"
    svc = one(docs, "Service", "xr-xray-clickhouse")
    assert {p["port"] for p in svc["spec"]["ports"]} == {8123, 9000}
    toml = one(docs, "ConfigMap", "xr-xray")["data"]["xray.toml"]
    assert 'url = "http://xr-xray-clickhouse:8123"' in toml
    assert 'user = "xray"' in toml
    # The bundled ClickHouse is created by the release: migrate after install.
    job = one(docs, "Job", "xr-xray-migrate")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,pre-upgrade"
    # A password is generated into the chart's Secret and given to ClickHouse.
    secret = one(docs, "Secret", "xr-xray")
    assert secret["data"]["clickhouse-password"]
    env = {e["name"]: e for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["XRAY_CLICKHOUSE_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "xr-xray"
    users = one(docs, "ConfigMap", "xr-xray-clickhouse")["data"]["xray-users.xml"]
    assert '<password from_env="XRAY_CLICKHOUSE_PASSWORD"/>' in users


def test_autoscaling_replaces_the_replica_count_with_an_hpa() -> None:
    docs = render("autoscaling")
    hpa = one(docs, "HorizontalPodAutoscaler", "xr-xray-collector")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "xr-xray-collector"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 20)
    targets = {m["resource"]["name"]: m["resource"]["target"]["averageUtilization"] for m in hpa["spec"]["metrics"]}
    assert targets == {"cpu": 60, "memory": 80}
    assert "replicas" not in one(docs, "Deployment", "xr-xray-collector")["spec"]
    assert one(docs, "Deployment", "xr-xray-api")["spec"]["replicas"] == 2


def test_existing_secret_replaces_the_charts_secret() -> None:
    docs = render("full")
    assert not find(docs, "Secret"), "with existingSecret the chart creates no Secret"
    for name in ("xr-xray-collector", "xr-xray-api"):
        env = one(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]["env"]
        refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env if "valueFrom" in e}
        assert refs["XRAY_SINKS__POSTGRES__URL"] == {"name": "xray-secrets", "key": "sink-postgres-url"}
        # Only the API needs the admin token.
        if name == "xr-xray-api":
            assert refs["XRAY_AUTH__ADMIN_TOKEN"]["name"] == "xray-secrets"
        else:
            assert "XRAY_AUTH__ADMIN_TOKEN" not in refs
    job = one(docs, "Job", "xr-xray-migrate")
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in env} == {"xray-secrets"}


def test_full_scenario_renders_ingress_and_service_monitors() -> None:
    docs = render("full")
    ing = one(docs, "Ingress", "xr-xray-api")
    assert ing["spec"]["ingressClassName"] == "nginx"
    assert ing["spec"]["rules"][0]["host"] == "xray.example.com"
    assert ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"] == {"name": "xr-xray-api", "port": {"name": "http"}}
    monitors = find(docs, "ServiceMonitor")
    assert {m["metadata"]["name"] for m in monitors} == {"xr-xray-collector", "xr-xray-api"}
    for m in monitors:
        assert m["metadata"]["labels"]["release"] == "prometheus"
        assert m["spec"]["endpoints"][0]["path"] == "/metrics"
    spread = one(docs, "Deployment", "xr-xray-api")["spec"]["template"]["spec"]["topologySpreadConstraints"][0]
    assert spread["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "api"


def test_secrets_never_reach_a_configmap() -> None:
    for scenario in ("external-clickhouse", "postgres", "all-config"):
        docs = render(scenario)
        text = "\n".join(str(d.get("data", {})) for d in find(docs, "ConfigMap"))
        assert "sentinel" not in text, scenario


def test_termination_grace_covers_the_shutdown_flush() -> None:
    docs = render("all-config")  # shutdown_timeout_ms = 9000
    for name in ("xr-xray-collector", "xr-xray-api"):
        assert one(docs, "Deployment", name)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 19


def test_config_change_rolls_the_pods() -> None:
    def checksum(*extra: str) -> str:
        d = one(render("default", *extra), "Deployment", "xr-xray-collector")
        return d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert checksum() == checksum()
    assert checksum() != checksum("--set", "config.pipeline.batch_max_rows=10")


def render_notes(tmp_path: Path, *args: str) -> str:
    """NOTES.txt as Helm would print it after an install.

    `helm install --dry-run=client` of Helm 3.17 still wants a cluster, so a
    copy of the chart renders NOTES.txt through `tpl` into a ConfigMap.
    """
    chart = tmp_path / "xray"
    shutil.copytree(CHART, chart)
    shutil.copy(chart / "templates" / "NOTES.txt", chart / "notes.txt")
    (chart / "templates" / "zz-notes-under-test.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes-under-test\n"
        "data:\n  notes: {{ tpl (.Files.Get \"notes.txt\") . | quote }}\n"
    )
    r = helm("template", "xr", str(chart), "--namespace", "observability", *args)
    assert r.code == 0, r.stderr
    docs = [d for d in yaml.safe_load_all(r.stdout) if d]
    return one(docs, "ConfigMap", "notes-under-test")["data"]["notes"]


def test_notes_say_where_to_send_and_query(tmp_path: Path) -> None:
    notes = render_notes(tmp_path)
    assert "http://xr-xray-collector.observability.svc:4317" in notes
    assert "http://xr-xray-collector.observability.svc:4318" in notes
    assert "x-api-key=xr_" in notes
    assert "port-forward svc/xr-xray-api 8080:8080" in notes
    assert "export XRAY_API=http://127.0.0.1:8080" in notes
    assert "$XRAY_API/api/v1/executions" in notes
    assert "get secret xr-xray -o jsonpath='{.data.admin-token}'" in notes
    assert "$XRAY_API/api/v1/apps" in notes
    assert "exec deploy/xr-xray-api -- xray --config /etc/xray/xray.toml apps create --name my-app" in notes
    assert "at http://clickhouse:8123, database xray" in notes


def test_notes_follow_ingress_and_bundled_clickhouse(tmp_path: Path) -> None:
    notes = render_notes(tmp_path, "-f", values_file("full"), "--set", "clickhouse.bundled.enabled=true")
    assert "export XRAY_API=https://xray.example.com" in notes
    assert "port-forward" not in notes
    assert "bundled single-node ClickHouse xr-xray-clickhouse" in notes
    assert "get secret xray-secrets" in notes
