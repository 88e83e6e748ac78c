"""The chart and the `xray` binary agree on the configuration.

The ConfigMap's xray.toml is fed to `xray config --config FILE`, which loads
it exactly as the pods do (unknown keys are errors) and prints the effective
configuration with secrets masked. The secret environment variables of the
rendered pods are fed to it as well.
"""

from __future__ import annotations

import base64
import os
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import SCENARIOS, VALUES_DIR, CHART, find, one, render

MASK = "********"


def chart_toml(scenario: str, *extra: str) -> str:
    docs = render(scenario, *extra)
    return one(docs, "ConfigMap", "xr-xray")["data"]["xray.toml"]


def run_xray_config(
    xray_bin: str, toml_text: str, tmp_path: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`xray config --config FILE` with no XRAY_* variables but `env`."""
    path = tmp_path / "rendered.toml"
    path.write_text(toml_text)
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("XRAY_")}
    clean.update(env or {})
    return subprocess.run(
        [xray_bin, "config", "--config", str(path)],
        capture_output=True,
        text=True,
        check=False,
        env=clean,
        cwd=tmp_path,  # no ./xray.toml to pick up by accident
    )


def effective(xray_bin: str, toml_text: str, tmp_path: Path, env: dict[str, str] | None = None) -> dict:
    p = run_xray_config(xray_bin, toml_text, tmp_path, env)
    assert p.returncode == 0, f"xray config rejected the chart's xray.toml:\n{p.stderr}\n---\n{toml_text}"
    return tomllib.loads(p.stdout)


def leaves(tree: dict, prefix: str = "") -> dict[str, Any]:
    """Flattens nested tables to dotted keys."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(leaves(v, key + "."))
        else:
            out[key] = v
    return out


def pod_secret_env(docs: list[dict]) -> set[str]:
    """Names of the XRAY_* variables the collector and API pods read from a Secret."""
    names = set()
    for d in find(docs, "Deployment"):
        for c in d["spec"]["template"]["spec"]["containers"]:
            for e in c.get("env", []):
                if e["name"].startswith("XRAY_") and "secretKeyRef" in e.get("valueFrom", {}):
                    names.add(e["name"])
    return names


def env_key(name: str) -> str:
    return name.removeprefix("XRAY_").lower().replace("__", ".")


# Values that reach xray.toml, and where: values path -> config key. This is
# the chart's half of the contract; the tests below keep it complete in both
# directions.
VALUES_TO_CONFIG = {
    "config.receivers.otlp.max_message_bytes": "receivers.otlp.max_message_bytes",
    "config.api.cors_origins": "api.cors_origins",
    "config.storage.backend": "storage.backend",
    "config.storage.clickhouse.ttl_days": "storage.clickhouse.ttl_days",
    "config.storage.clickhouse.async_insert": "storage.clickhouse.async_insert",
    "config.storage.postgres.max_connections": "storage.postgres.max_connections",
    "config.sinks.postgres.enabled": "sinks.postgres",  # the table is present or absent
    "config.sinks.postgres.max_connections": "sinks.postgres.max_connections",
    "config.pipeline.batch_max_rows": "pipeline.batch_max_rows",
    "config.pipeline.flush_interval_ms": "pipeline.flush_interval_ms",
    "config.pipeline.write_timeout_ms": "pipeline.write_timeout_ms",
    "config.pipeline.shutdown_timeout_ms": "pipeline.shutdown_timeout_ms",
    "config.pipeline.max_queue_bytes": "pipeline.max_queue_bytes",
    "config.pipeline.spool_enabled": "pipeline.spool_enabled",
    "config.pipeline.spool_max_bytes": "pipeline.spool_max_bytes",
    "config.pipeline.spool_fsync": "pipeline.spool_fsync",
    "config.pipeline.spool_fsync_interval_ms": "pipeline.spool_fsync_interval_ms",
    "config.pipeline.retry_initial_backoff_ms": "pipeline.retry_initial_backoff_ms",
    "config.pipeline.retry_max_backoff_ms": "pipeline.retry_max_backoff_ms",
    "config.limits.max_attribute_bytes": "limits.max_attribute_bytes",
    "config.limits.max_attributes_per_span": "limits.max_attributes_per_span",
    "config.limits.max_events_per_span": "limits.max_events_per_span",
    "config.limits.max_steps_per_execution": "limits.max_steps_per_execution",
    "config.limits.max_candidates_per_step": "limits.max_candidates_per_step",
    "config.auth.required": "auth.required",
    "config.auth.cache_ttl_ms": "auth.cache_ttl_ms",
    "config.auth.rate_limit.requests_per_sec": "auth.rate_limit.requests_per_sec",
    "config.auth.rate_limit.burst": "auth.rate_limit.burst",
    "config.log.level": "log.level",
    "config.log.format": "log.format",
    "clickhouse.external.url": "storage.clickhouse.url",
    "clickhouse.external.database": "storage.clickhouse.database",
    "clickhouse.external.user": "storage.clickhouse.user",
    "clickhouse.external.cluster": "storage.clickhouse.cluster",
    "migrations.job.enabled": "storage.clickhouse.migrate_on_start",  # negated
    "secrets.clickhousePassword": "storage.clickhouse.password",
    "secrets.adminToken": "auth.admin_token",
    "secrets.postgresUrl": "storage.postgres.url",
    "secrets.sinkPostgresUrl": "sinks.postgres.url",
}

# Config keys the chart sets itself, whatever the values say.
FIXED_BY_CHART = {
    "receivers.otlp.grpc_addr": "0.0.0.0:4317",
    "receivers.otlp.http_addr": "0.0.0.0:4318",
    "api.addr": "0.0.0.0:8080",
    # The collector's spool volume (an emptyDir, see collector.spool).
    "pipeline.spool_dir": "/var/lib/xray/spool",
}

# Config keys the chart deliberately leaves at the binary's default, and why.
NOT_SET_BY_CHART = {
    # SQLite is a single local file: separate collector and API pods cannot share it.
    "storage.sqlite.path",
}


def get(tree: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        tree = tree[part]
    return tree


def defaults() -> dict:
    return yaml.safe_load((CHART / "values.yaml").read_text())


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_binary_accepts_the_rendered_config(scenario: str, xray_bin: str, tmp_path: Path) -> None:
    toml_text = chart_toml(scenario)
    emitted = leaves(tomllib.loads(toml_text))
    got = leaves(effective(xray_bin, toml_text, tmp_path))
    # Every key the chart writes is one the binary knows and keeps as written.
    for key, value in emitted.items():
        assert key in got, f"the binary does not report {key}"
        assert got[key] == value, f"{key}: chart wrote {value!r}, binary has {got[key]!r}"
    for key, value in FIXED_BY_CHART.items():
        assert got[key] == value


def test_a_misspelt_key_is_caught_by_this_check(xray_bin: str, tmp_path: Path) -> None:
    # Proves the test above has teeth: a key the binary does not know fails it.
    toml_text = chart_toml("default").replace("ttl_days = 30", "ttl_days = 30\nttl_dayz = 30")
    p = run_xray_config(xray_bin, toml_text, tmp_path)
    assert p.returncode != 0
    assert "ttl_dayz" in p.stderr


def test_every_value_that_maps_to_config_reaches_the_binary(xray_bin: str, tmp_path: Path) -> None:
    scenario = yaml.safe_load((VALUES_DIR / "all-config.yaml").read_text())
    base = defaults()

    # The mapping lists every `config.*` value of values.yaml ...
    config_values = {f"config.{k}" for k in leaves(base["config"])}
    assert config_values - VALUES_TO_CONFIG.keys() == set(), "map these values in VALUES_TO_CONFIG"
    # ... and the scenario sets each mapped value to something else than its default.
    for path in VALUES_TO_CONFIG:
        if path == "secrets.postgresUrl":
            continue  # only read with the postgres backend: see the secret variables test
        if path == "config.storage.backend":
            continue  # clickhouse differs from the binary's default (sqlite); postgres: below
        assert get(scenario, path) != get(base, path), f"all-config.yaml must change {path}"

    docs = render("all-config")
    toml_text = one(docs, "ConfigMap", "xr-xray")["data"]["xray.toml"]
    secret = one(docs, "Secret", "xr-xray")
    secret_env = {}
    for name in pod_secret_env(docs):
        key = {
            "XRAY_STORAGE__CLICKHOUSE__PASSWORD": "clickhouse-password",
            "XRAY_AUTH__ADMIN_TOKEN": "admin-token",
            "XRAY_STORAGE__POSTGRES__URL": "postgres-url",
            "XRAY_SINKS__POSTGRES__URL": "sink-postgres-url",
        }[name]
        if key in secret["data"]:
            secret_env[name] = base64.b64decode(secret["data"][key]).decode()
    got = effective(xray_bin, toml_text, tmp_path, secret_env)

    for path, key in VALUES_TO_CONFIG.items():
        if path == "secrets.postgresUrl":
            continue
        want = get(scenario, path)
        if path == "config.sinks.postgres.enabled":
            assert ("postgres" in got["sinks"]) is want
        elif path == "migrations.job.enabled":
            assert get(got, key) is (not want)
            assert get(got, "storage.postgres.migrate_on_start") is (not want)
        elif path.startswith("secrets."):
            value = get(got, key)
            assert want not in value and MASK in value, f"{key} must be set and masked"
        else:
            assert get(got, key) == want, f"{path} -> {key}"


def test_every_binary_key_is_set_by_the_chart(xray_bin: str, tmp_path: Path) -> None:
    docs = render("all-config")
    toml_text = one(docs, "ConfigMap", "xr-xray")["data"]["xray.toml"]
    from_file = set(leaves(tomllib.loads(toml_text)))
    # The primary store's Postgres URL comes from the environment too, with the
    # postgres backend (this scenario uses ClickHouse).
    from_env = {env_key(n) for n in pod_secret_env(docs)} | {"storage.postgres.url"}
    env = {n: "postgres://u:p@h:5432/d" if "URL" in n else "x" * 24 for n in pod_secret_env(docs)}
    known = set(leaves(effective(xray_bin, toml_text, tmp_path, env)))
    unset = known - from_file - from_env - NOT_SET_BY_CHART
    assert unset == set(), f"config keys the chart cannot set: {sorted(unset)}"
    stale = (from_file | from_env | NOT_SET_BY_CHART) - known
    assert stale == set(), f"keys the chart knows but the binary does not: {sorted(stale)}"


@pytest.mark.parametrize("scenario", ["external-clickhouse", "postgres", "full", "all-config"])
def test_the_pods_secret_variables_are_config_keys(scenario: str, xray_bin: str, tmp_path: Path) -> None:
    docs = render(scenario)
    toml_text = one(docs, "ConfigMap", "xr-xray")["data"]["xray.toml"]
    names = pod_secret_env(docs)
    assert "XRAY_AUTH__ADMIN_TOKEN" in names
    # Values that look like numbers, booleans, arrays or quoted strings must
    # arrive as the exact text.
    tricky = {
        "XRAY_STORAGE__CLICKHOUSE__PASSWORD": "12345678901234567890",
        "XRAY_AUTH__ADMIN_TOKEN": '"[quoted-admin-token-value]"',
        "XRAY_STORAGE__POSTGRES__URL": "postgres://xray:true@pg:5432/xray",
        "XRAY_SINKS__POSTGRES__URL": "postgres://sink:123@pg:5432/sink",
    }
    env = {n: tricky[n] for n in names}
    p = run_xray_config(xray_bin, toml_text, tmp_path, env)
    assert p.returncode == 0, p.stderr
    got = tomllib.loads(p.stdout)
    want_backend = yaml.safe_load((VALUES_DIR / f"{scenario}.yaml").read_text())
    want_backend = ((want_backend or {}).get("config", {}).get("storage", {}).get("backend", "clickhouse"))
    assert got["storage"]["backend"] == want_backend
    for name in names:
        value = get(got, env_key(name))
        assert tricky[name] not in value, f"{name} is printed unmasked"
        assert MASK in value, f"{name} did not reach {env_key(name)}"


def test_the_migration_job_reads_the_same_config_and_secrets() -> None:
    for scenario in ("default", "external-clickhouse", "bundled-clickhouse", "full"):
        docs = render(scenario)
        job_toml = one(docs, "ConfigMap", "xr-xray-migrate")["data"]["xray.toml"]
        assert job_toml == one(docs, "ConfigMap", "xr-xray")["data"]["xray.toml"]
        job = one(docs, "Job", "xr-xray-migrate")["spec"]["template"]["spec"]["containers"][0]
        job_env = {e["name"] for e in job["env"]}
        assert job_env == pod_secret_env(docs) - {"XRAY_AUTH__ADMIN_TOKEN"}, scenario
