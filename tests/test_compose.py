"""docker-compose.yml and deploy/: services, health checks, start order, settings valid in prod, and the
optional observability profile (Prometheus scraping every service, a Grafana dashboard of every metric).

Docker is not needed: the compose file is parsed with PyYAML, ``${VAR...}`` is interpolated here
the way compose does it, and each service's environment is fed to its settings class.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr, ValidationError

from services.common.config import PLACEHOLDER_PREFIX, BaseServiceSettings
from services.common.nats.server.binary import NatsServerError, find_nats_server
from services.common.observability import metrics
from services.dispatcher.settings import DispatcherSettings
from services.gateway.settings import GatewaySettings
from services.notifier.settings import NotifierSettings
from tests.support.nats_deploy import deployable_copy, make_certs, role_password_env

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]

APP_SETTINGS: dict[str, type[BaseServiceSettings]] = {
    "gateway": GatewaySettings,
    "dispatcher": DispatcherSettings,
    "notifier": NotifierSettings,
}
ONE_SHOT = {"minio-init", "nats-init"}
LONG_RUNNING = set(SERVICES) - ONE_SHOT
REQUIRED_PLAIN = ("nats_url", "storage_backend", "s3_endpoint_url", "storage_bucket")
CLI_ONLY = {"api_key"}  # the CLI's own key: no service reads it
CONDITIONS = {"service_healthy", "service_completed_successfully", "service_started"}

_VAR = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def dummy(name: str) -> str:
    return f"dummy-{name.lower()}-0123456789"


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's interpolation: set variables win, ``:?`` ones get a dummy, ``:-`` their default."""
    env = env or {}

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        if env.get(name):
            return env[name]
        if op in (":?", "?"):
            return dummy(name)
        if op in (":-", "-"):
            return arg
        return ""

    return _VAR.sub(replace, value)


def environment(service: str) -> dict[str, str]:
    env = SERVICES[service].get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def secret_fields(cls: type[BaseServiceSettings]) -> list[str]:
    fields = []
    for name, info in cls.model_fields.items():
        annotation = info.annotation
        if annotation is SecretStr or SecretStr in typing.get_args(annotation):
            fields.append(name)
    return [name for name in fields if name not in CLI_ONLY]


def build_settings(
    cls: type[BaseServiceSettings], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> BaseServiceSettings:
    for key in list(os.environ):
        if key.startswith("GPURELAY_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return cls(_env_file=None)


def test_services_exist() -> None:
    assert set(APP_SETTINGS) | {"nats", "minio", "minio-init", "proxy"} <= set(SERVICES)


@pytest.mark.parametrize("service", sorted(LONG_RUNNING))
def test_long_running_services_have_health_checks(service: str) -> None:
    check = SERVICES[service].get("healthcheck")
    assert check, f"{service} has no healthcheck"
    assert check["test"][0] in ("CMD", "CMD-SHELL")
    assert SERVICES[service].get("restart") in ("unless-stopped", "always")


def test_depends_on_has_conditions() -> None:
    for name, service in SERVICES.items():
        deps = service.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: depends_on without conditions"
        for target, spec in deps.items():
            assert target in SERVICES
            assert spec.get("condition") in CONDITIONS, f"{name} -> {target}"
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[target], f"{target} has no healthcheck to wait for"
            if spec["condition"] == "service_completed_successfully":
                assert target in ONE_SHOT
    for app in APP_SETTINGS:
        assert SERVICES[app]["depends_on"]["nats"]["condition"] == "service_healthy"
    assert SERVICES["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"
    assert SERVICES["minio-init"]["restart"] == "no"
    assert SERVICES["gateway"]["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
    assert SERVICES["proxy"]["depends_on"]["gateway"]["condition"] == "service_healthy"


def test_nats_service() -> None:
    nats = SERVICES["nats"]
    assert nats["image"].startswith("nats:2.")
    command = " ".join(nats["command"])
    assert "-js" in command
    assert "-sd /data" in command
    assert "-c /etc/nats/nats.conf" in command
    assert "./deploy/nats/nats.conf:/etc/nats/nats.conf:ro" in nats["volumes"]
    data = [v for v in nats["volumes"] if v.endswith(":/data")]
    assert data
    assert data[0].split(":")[0] in COMPOSE["volumes"]
    test = " ".join(nats["healthcheck"]["test"])
    assert "wget" in test
    assert ":8222/healthz?js-enabled-only=true" in test
    assert "mc mb --ignore-existing" in " ".join(SERVICES["minio-init"]["entrypoint"])


@pytest.mark.parametrize("service", sorted(APP_SETTINGS))
def test_app_service_image_and_command(service: str) -> None:
    spec = SERVICES[service]
    assert spec["build"]["dockerfile"] == "deploy/Dockerfile"
    assert (ROOT / spec["build"]["context"] / spec["build"]["dockerfile"]).is_file()
    assert spec["command"] == ["gpurelay", service]
    env = environment(service)
    if "GPURELAY_PORT" in env:
        assert f"127.0.0.1:{env['GPURELAY_PORT']}/healthz" in " ".join(spec["healthcheck"]["test"])


@pytest.mark.parametrize(("service", "cls"), sorted(APP_SETTINGS.items()))
def test_required_settings_are_in_the_environment(service: str, cls: type[BaseServiceSettings]) -> None:
    env = environment(service)
    secrets = secret_fields(cls)
    assert "signing_secret" in secrets
    for field in (*secrets, *REQUIRED_PLAIN):
        assert f"GPURELAY_{field.upper()}" in env, f"{service} lacks GPURELAY_{field.upper()}"
    for field in secrets:
        assert re.fullmatch(r"\$\{[A-Z][A-Z0-9_]*:\?[^}]+\}", env[f"GPURELAY_{field.upper()}"]), (
            f"{service}: GPURELAY_{field.upper()} must come from the environment (${{VAR:?...}})"
        )
    assert env["GPURELAY_PROFILE"] == "prod"


@pytest.mark.parametrize(("service", "cls"), sorted(APP_SETTINGS.items()))
def test_settings_validate_in_prod(
    service: str, cls: type[BaseServiceSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {key: interpolate(value) for key, value in environment(service).items()}
    settings = build_settings(cls, env, monkeypatch)
    assert settings.profile == "prod"
    assert settings.storage_backend == "s3"
    assert settings.nats_url == "nats://nats:4222"
    assert settings.s3_endpoint_url == "http://minio:9000"
    for field in secret_fields(cls):
        value = getattr(settings, field)
        assert isinstance(value, SecretStr)
        assert not value.get_secret_value().startswith(PLACEHOLDER_PREFIX)
    if isinstance(settings, GatewaySettings | NotifierSettings):
        assert settings.host == "0.0.0.0"


@pytest.mark.parametrize(("service", "cls"), sorted(APP_SETTINGS.items()))
def test_missing_secret_is_refused_in_prod(
    service: str, cls: type[BaseServiceSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {key: interpolate(value) for key, value in environment(service).items()}
    del env["GPURELAY_SIGNING_SECRET"]
    with pytest.raises(ValidationError, match="GPURELAY_SIGNING_SECRET"):
        build_settings(cls, env, monkeypatch)


def test_no_literal_secrets_anywhere() -> None:
    for name in SERVICES:
        for key, value in environment(name).items():
            if re.search(r"SECRET|PASSWORD|ACCESS_KEY|TOKEN", key) and value:
                assert value.startswith("${"), f"{name}: {key} is written into the file"


def test_interpolate_like_compose() -> None:
    assert interpolate("${A:?set A}") == dummy("A")
    assert interpolate("${A:-x}") == "x"
    assert interpolate("${A:-x}", {"A": "y"}) == "y"
    assert interpolate("$$HOME ${B}") == "$HOME "


def _conf(path: Path) -> str:
    return "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())


def test_single_node_nats_conf() -> None:
    text = _conf(DEPLOY / "nats" / "nats.conf")
    assert re.search(r"^\s*jetstream\s*\{", text, re.M)
    assert re.search(r"^\s*http\s*:\s*\S*8222", text, re.M)
    assert re.search(r"store_dir\s*:\s*\"?/data", text)
    assert text.count("{") == text.count("}")


def test_cluster_nats_confs() -> None:
    files = sorted((DEPLOY / "nats" / "cluster").glob("nats-*.conf"))
    assert [f.name for f in files] == ["nats-1.conf", "nats-2.conf", "nats-3.conf"]
    names = set()
    for path in files:
        text = _conf(path)
        assert re.search(r"^\s*jetstream\s*\{", text, re.M)
        assert re.search(r"^\s*cluster\s*\{", text, re.M)
        routes = re.findall(r"nats-route://(?:[^@\s]+@)?([\w.-]+):6222", text)
        assert sorted(routes) == ["nats-1", "nats-2", "nats-3"]
        names.add(re.search(r"server_name\s*:\s*(\S+)", text).group(1))  # type: ignore[union-attr]
        assert text.count("{") == text.count("}")
    assert names == {"nats-1", "nats-2", "nats-3"}


@pytest.mark.parametrize("path", ["nats.conf", "cluster/nats-1.conf", "cluster/nats-2.conf", "cluster/nats-3.conf"])
def test_nats_server_accepts_config(path: str, tmp_path: Path) -> None:
    try:
        binary = find_nats_server()
    except NatsServerError:
        pytest.skip("nats-server not installed")
    config = deployable_copy(DEPLOY / "nats" / path, tmp_path, make_certs(tmp_path / "certs"))  # its TLS files here
    result = subprocess.run(
        [str(binary), "-t", "-c", str(config)], capture_output=True, text=True, timeout=30, env=role_password_env()
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_proxy_gives_one_origin() -> None:
    proxy = SERVICES["proxy"]
    assert proxy["image"].startswith("caddy:")
    assert "./deploy/Caddyfile:/etc/caddy/Caddyfile:ro" in proxy["volumes"]
    assert all(not name.startswith(("gateway", "notifier")) for name in SERVICES if "ports" in SERVICES[name])
    caddy = (DEPLOY / "Caddyfile").read_text()
    assert "reverse_proxy gateway:8000" in caddy
    assert re.search(r"reverse_proxy notifier:8001 \{\s*flush_interval -1", caddy)
    assert "reverse_proxy minio:9000" in caddy
    assert caddy.count("{") == caddy.count("}")
    notifier = re.search(r"@events path_regexp events (\S+)", caddy)
    assert notifier is not None
    for path in ("/v1/events", "/v1/jobs/j1/events", "/v1/sessions/s1/events", "/v1/webhooks/whe_1/deliveries"):
        assert re.fullmatch(notifier.group(1).strip("^$"), path), f"{path} must reach the notifier"
    assert not re.fullmatch(notifier.group(1).strip("^$"), "/v1/webhooks/whe_1")


def test_dockerfile() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    assert re.search(r"^RUN pip install -c constraints\.txt \./clients/python \.", text, re.M)  # the CLI's client too
    assert re.search(r"^COPY clients/python ", text, re.M)
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users
    assert users[-1].split(":")[0] not in ("root", "0")


# -- the observability profile -----------------------------------------------------------------

OBSERVABILITY = {"prometheus", "grafana"}
PROMETHEUS = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
DASHBOARD = json.loads((DEPLOY / "grafana" / "dashboards" / "gpurelay.json").read_text())


def test_prometheus_and_grafana_are_an_optional_profile_on_loopback() -> None:
    assert set(SERVICES) >= OBSERVABILITY
    for name, service in SERVICES.items():
        assert service.get("profiles", []) == (["observability"] if name in OBSERVABILITY else []), name
    for name in OBSERVABILITY:
        assert all(str(port).startswith("127.0.0.1:") for port in SERVICES[name]["ports"]), name
    assert "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in SERVICES["prometheus"]["volumes"]
    grafana = SERVICES["grafana"]["volumes"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana
    assert "./deploy/grafana/dashboards:/var/lib/grafana/dashboards:ro" in grafana
    for name in OBSERVABILITY:
        for volume in SERVICES[name]["volumes"]:
            source = volume.split(":")[0]
            assert (ROOT / source).exists() if source.startswith("./") else source in COMPOSE["volumes"], volume


def test_prometheus_scrapes_every_service_on_its_port() -> None:
    jobs = {job["job_name"]: job for job in PROMETHEUS["scrape_configs"]}
    assert set(jobs) == set(APP_SETTINGS)
    for service, job in jobs.items():
        assert job.get("metrics_path", "/metrics") == "/metrics"
        assert job["static_configs"] == [{"targets": [f"{service}:{environment(service)['GPURELAY_PORT']}"]}]


def exposed_names() -> dict[str, set[str]]:
    """Each metric family of :mod:`services.common.observability.metrics` and the sample names Prometheus sees."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    families: dict[str, set[str]] = {}
    for collectors in metrics.SERVICE_METRICS.values():
        for collector in collectors:
            for family in collector.describe():
                families[family.name] = {family.name + suffix for suffix in suffixes[family.type]}
    return families


def test_the_dashboard_shows_every_metric_and_only_metrics_that_exist() -> None:
    panels = [p for p in DASHBOARD["panels"] if p["type"] != "row"]
    exprs = [target["expr"] for panel in panels for target in panel["targets"]]
    used = {name for expr in exprs for name in re.findall(r"\bgpurelay_[a-z_]+", expr)}
    families = exposed_names()
    known = set().union(*families.values())
    assert used <= known, used - known
    assert [name for name, samples in families.items() if not samples & used] == []
    datasource = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    assert {panel["datasource"]["uid"] for panel in panels} == {uid}


def test_the_proxy_never_serves_metrics() -> None:
    caddy = (DEPLOY / "Caddyfile").read_text()
    blocked = re.search(r"@metrics path /metrics[^\n]*\n\s*handle @metrics \{\s*respond 404\s*\}", caddy)
    assert blocked, "the Caddyfile must answer 404 for /metrics"
    assert blocked.start() < caddy.index("reverse_proxy gateway:8000")
