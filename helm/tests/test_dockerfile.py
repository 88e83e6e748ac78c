"""The Dockerfile lints clean and builds what the chart runs."""

from __future__ import annotations

import os
import re
import subprocess
import tomllib

from conftest import CHART, REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"


def test_hadolint_finds_nothing() -> None:
    hadolint = os.environ.get("HADOLINT_BIN", "hadolint")
    p = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True, text=True, check=False,
    )
    assert p.returncode == 0, p.stdout + p.stderr


def test_hadolint_would_catch_a_mistake(tmp_path) -> None:
    # Guards the test above against passing vacuously.
    bad = tmp_path / "Dockerfile"
    bad.write_text(DOCKERFILE.read_text().replace("USER 65532:65532", "USER root"))
    hadolint = os.environ.get("HADOLINT_BIN", "hadolint")
    p = subprocess.run([hadolint, str(bad)], capture_output=True, text=True, check=False)
    assert p.returncode != 0 and "DL3002" in p.stdout


def test_image_runs_xray_as_non_root_on_a_distroless_base() -> None:
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM (\S+)", text, re.M)
    assert len(stages) == 2, "a build stage and a runtime stage"
    assert stages[-1].startswith("gcr.io/distroless/") and stages[-1].endswith(":nonroot")
    assert "cargo build --release --locked -p xray" in text
    assert re.search(r"^USER 65532:65532$", text, re.M)
    assert 'ENTRYPOINT ["/usr/local/bin/xray"]' in text
    # The chart's pods run as the image's user.
    values = (CHART / "values.yaml").read_text()
    assert "runAsUser: 65532" in values


def test_build_toolchain_matches_the_pinned_one() -> None:
    pinned = re.search(r'channel = "([^"]+)"', (REPO_ROOT / "rust-toolchain.toml").read_text()).group(1)
    assert f"ARG RUST_VERSION={pinned}" in DOCKERFILE.read_text()


def test_dockerignore_keeps_build_output_and_secrets_out_of_the_context() -> None:
    ignored = {
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for entry in (".git", "target", "**/target", "xray.toml", "xray-data", "**/.venv"):
        assert entry in ignored


def image_env() -> dict[str, str]:
    """The XRAY_* variables the image sets (ENV lines, with continuations)."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    env = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for name, value in re.findall(r"(XRAY_\w+)=(\S+)", line):
                env[name] = value
    return env


def test_the_images_variables_are_config_keys(xray_bin: str, tmp_path) -> None:
    env = image_env()
    assert set(env) == {"XRAY_RECEIVERS__OTLP__GRPC_ADDR", "XRAY_RECEIVERS__OTLP__HTTP_ADDR", "XRAY_API__ADDR"}
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("XRAY_")}
    p = subprocess.run(
        [xray_bin, "config"], capture_output=True, text=True, check=False,
        env={**clean, **env}, cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr
    got = tomllib.loads(p.stdout)
    assert got["receivers"]["otlp"]["grpc_addr"] == "0.0.0.0:4317"
    assert got["receivers"]["otlp"]["http_addr"] == "0.0.0.0:4318"
    assert got["api"]["addr"] == "0.0.0.0:8080"
