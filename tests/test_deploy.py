"""The deploy story, checked offline: rules, dashboards, compose, Dockerfile, Kubernetes.

What runs here without a Docker engine or a cluster: ``promtool check``/``test rules`` on the
Prometheus rules, the dashboards against their generator and Grafana's conventions, the
compose file through ``docker compose config`` (or Debian's ``docker-compose config``), and every
Kubernetes manifest against the API's own OpenAPI schemas (kubernetes-validate, strict, offline).
The one CRD, ServiceMonitor, has no schema there: it is checked against the fields of the
Prometheus Operator's monitoring.coreos.com/v1 ServiceMonitor it uses (``SERVICE_MONITOR``).
Then the pieces are checked against each other: ports, labels, paths, user ids, settings names,
and nothing ships a usable secret: compose refuses to start until each one is set, the example
Secret's empty values are refused by the settings, Prometheus reads the metrics token from a file.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version
from pydantic import ValidationError

from dashboards.rules import RECORDED, normalized
from proxy.config import Settings

ROOT = Path(__file__).resolve().parents[1]
PROM = ROOT / "deploy" / "prometheus"
RULES = PROM / "rules" / "tokenmeter.rules.yml"
RULE_TESTS = PROM / "tests" / "tokenmeter.test.yml"
K8S = ROOT / "deploy" / "kubernetes"
GRAFANA = ROOT / "deploy" / "grafana" / "provisioning"
DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))
METRICS_TOKEN_FILE = "/run/tokenmeter/metrics-token"
# Every secret compose needs; none has a default, so compose refuses to start without each.
COMPOSE_SECRETS = (
    "POSTGRES_PASSWORD",
    "TOKENMETER_ADMIN_TOKEN",
    "TOKENMETER_METRICS_TOKEN",
    "GRAFANA_ADMIN_PASSWORD",
)

DURATION = (
    "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)
# The subset of monitoring.coreos.com/v1 ServiceMonitor that tokenmeter uses, with the types and
# duration pattern of the Prometheus Operator's CRD; unknown fields are refused (like --strict).
SERVICE_MONITOR: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "matchLabels": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                        }
                    },
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": {"type": "string", "pattern": DURATION},
                            "scrapeTimeout": {"type": "string", "pattern": DURATION},
                            "authorization": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {
                                    "type": {"type": "string"},
                                    "credentials": {
                                        "type": "object",
                                        "required": ["key"],
                                        "additionalProperties": False,
                                        "properties": {
                                            "name": {"type": "string"},
                                            "key": {"type": "string"},
                                            "optional": {"type": "boolean"},
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


def tool(*candidates: list[str]) -> list[str]:
    """The first command whose ``version`` probe runs; skip (fail in CI) when none is installed.

    The probe is the last word of each candidate (``version`` or ``--version``), not kept.
    """
    for *command, probe in candidates:
        if shutil.which(command[0]) and _runs([*command, probe]):
            return command
    names = " or ".join(" ".join(c[:-1]) for c in candidates)
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run this check, but {names} is not installed")
    pytest.skip(f"{names} is not installed")


def _runs(command: list[str]) -> bool:
    return subprocess.run(command, capture_output=True, check=False).returncode == 0  # noqa: S603


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)  # noqa: S603


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


# ---------------------------------------------------------------- Prometheus rules


def test_rules_pass_promtool_check() -> None:
    result = run([*tool(["promtool", "--version"]), "check", "rules", str(RULES)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 25 rules found" in result.stdout


def test_rule_unit_tests_pass() -> None:
    result = run([*tool(["promtool", "--version"]), "test", "rules", str(RULE_TESTS)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_unit_test_where_it_fires() -> None:
    alerts = {r["alert"] for g in load(RULES)["groups"] for r in g["rules"] if "alert" in r}
    cases = [case for test in load(RULE_TESTS)["tests"] for case in test.get("alert_rule_test", [])]
    fired = {case["alertname"] for case in cases if case["exp_alerts"]}
    assert alerts == fired
    assert {"TokenmeterSpendBurnHigh", "TokenmeterEventsDropped", "TokenmeterNoTraffic"} <= alerts


def test_every_recording_rule_has_a_unit_test() -> None:
    records = {r["record"] for g in load(RULES)["groups"] for r in g["rules"] if "record" in r}
    tested = " ".join(
        case["expr"]
        for test in load(RULE_TESTS)["tests"]
        for case in test.get("promql_expr_test", [])
    )
    assert {record for record in records if record not in tested} == set()


def test_every_recording_rule_is_the_dashboards_formula() -> None:
    # A rule and a panel that show the same figure (blended $/MTok, cache hit rate, spend vs
    # compensation...) use one formula: dashboards/promql.py's, as dashboards/rules.py applies it.
    rules = [rule for group in load(RULES)["groups"] for rule in group["rules"]]
    records = {rule["record"]: normalized(rule["expr"]) for rule in rules if "record" in rule}
    assert records == {name: normalized(expr) for name, expr in RECORDED.items()}


def test_compose_prometheus_config_is_valid_and_loads_the_rules(tmp_path: Path) -> None:
    # promtool checks that the credentials file exists: the container writes it at start.
    shutil.copytree(PROM, tmp_path / "prometheus")
    config = tmp_path / "prometheus" / "prometheus.yml"
    token = tmp_path / "metrics-token"
    token.write_text(secrets.token_hex(32))
    config.write_text(config.read_text().replace(METRICS_TOKEN_FILE, str(token)))
    result = run([*tool(["promtool", "--version"]), "check", "config", str(config)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 25 rules found" in result.stdout


def test_rules_and_dashboards_never_read_a_persons_pay() -> None:
    # Personal pay is exported only with TOKENMETER_METRICS_PERSONAL_PAY=true: nothing shipped
    # may need it (tests/integration/test_prometheus.py runs every panel without it).
    shipped = [RULES, *DASHBOARDS]
    assert [p.name for p in shipped if "tokenmeter_annual_compensation_usd" in p.read_text()] == []


# ---------------------------------------------------------------- dashboards


def test_committed_dashboards_are_what_the_generator_writes() -> None:
    result = run([sys.executable, "dashboards/generate.py", "--check"])
    assert result.returncode == 0, result.stderr
    assert [p.name for p in DASHBOARDS] == [
        "people-roi.json",
        "proxy-health.json",
        "token-economics.json",
    ]


def panels_of(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in board["panels"] if p["type"] != "row"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_takes_its_datasource_from_a_variable(path: Path) -> None:
    board = json.loads(path.read_text())
    assert board["schemaVersion"] >= 39
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    wanted = {"type": "prometheus", "uid": "${datasource}"}
    for panel in panels_of(board):
        assert panel["datasource"] == wanted, panel["title"]
        assert all(t["datasource"] == wanted for t in panel["targets"]), panel["title"]
    queried = [v for v in variables.values() if v["type"] == "query"]
    assert all(v["datasource"] == wanted for v in queried)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_panels_fit_the_grid_without_overlapping(path: Path) -> None:
    board = json.loads(path.read_text())
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    taken: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {(pos["x"] + dx, pos["y"] + dy) for dx in range(pos["w"]) for dy in range(pos["h"])}
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells
        refs = [t["refId"] for t in panel.get("targets", [])]
        assert len(refs) == len(set(refs)), panel["title"]


def test_dashboard_uids_are_unique_and_stable() -> None:
    uids = [json.loads(p.read_text())["uid"] for p in DASHBOARDS]
    assert sorted(uids) == ["tokenmeter-economics", "tokenmeter-health", "tokenmeter-people"]


def test_readme_describes_every_panel_of_every_dashboard() -> None:
    readme = ROOT / "README.md"
    if not (readme.exists() and "## Dashboards" in readme.read_text()):
        readme = ROOT / "docs" / "README-dashboards-deploy.md"
    text = readme.read_text()
    missing = [
        f"{path.name}: {panel['title']}"
        for path in DASHBOARDS
        for panel in panels_of(json.loads(path.read_text()))
        if f"**{panel['title']}**" not in text
    ]
    assert missing == []


# ---------------------------------------------------------------- Grafana provisioning and compose


def compose() -> dict[str, Any]:
    data: dict[str, Any] = load(ROOT / "docker-compose.yml")
    return data


def compose_config(environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = tool(["docker", "compose", "version"], ["docker-compose", "version"])
    env = {k: v for k, v in os.environ.items() if k not in COMPOSE_SECRETS} | environment
    return subprocess.run(  # noqa: S603
        [*command, "-f", "docker-compose.yml", "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env=env,
    )


def secret_values() -> dict[str, str]:
    return {name: secrets.token_hex(24) for name in COMPOSE_SECRETS}


def test_compose_file_passes_docker_compose_config() -> None:
    result = compose_config(secret_values())
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("missing", COMPOSE_SECRETS)
def test_compose_refuses_to_start_without_each_secret(missing: str) -> None:
    environment = secret_values()
    del environment[missing]
    result = compose_config(environment)
    assert result.returncode != 0
    assert f"set {missing}" in result.stdout + result.stderr


def test_compose_ships_no_default_secret_and_no_anonymous_viewer() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    defaults = re.findall(r"\$\{(\w+):-", text)
    secret = re.compile("PASSWORD|TOKEN|SECRET|SALT")
    assert defaults  # the check below sees the file's defaults
    assert [n for n in defaults if secret.search(n.removeprefix("TOKENMETER_"))] == []
    for name in COMPOSE_SECRETS:
        assert f"${{{name}:?" in text, name
    grafana = compose()["services"]["grafana"]["environment"]
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert "GF_AUTH_ANONYMOUS_ORG_ROLE" not in grafana


def test_compose_runs_proxy_postgres_prometheus_and_grafana() -> None:
    services = compose()["services"]
    assert set(services) == {"proxy", "postgres", "prometheus", "grafana"}
    proxy = services["proxy"]
    assert proxy["environment"]["TOKENMETER_DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert "@postgres:5432/" in proxy["environment"]["TOKENMETER_DATABASE_URL"]
    assert proxy["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "/healthz" in " ".join(proxy["healthcheck"]["test"])
    assert proxy["read_only"] is True
    assert any(v.endswith(":/var/lib/tokenmeter/spool") for v in proxy["volumes"])
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), volume


def test_compose_proxy_environment_is_valid_settings() -> None:
    environment = compose()["services"]["proxy"]["environment"]
    given = secret_values()

    def interpolate(value: str) -> str:
        value = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)
        return re.sub(r"\$\{(\w+):\?[^}]*\}", lambda m: given[m.group(1)], value)

    # Strings from the compose file, parsed by Settings as it parses the environment.
    values: dict[str, Any] = {
        key.removeprefix("TOKENMETER_").lower(): interpolate(str(value))
        for key, value in environment.items()
    }
    assert set(values) <= set(Settings.model_fields)
    settings = Settings(**values)
    assert settings.workers == 1  # one process per container: its /metrics sees every request
    assert settings.admin_token == given["TOKENMETER_ADMIN_TOKEN"]
    assert settings.metrics_token == given["TOKENMETER_METRICS_TOKEN"]
    assert settings.metrics_personal_pay is False


def test_grafana_provisioning_matches_the_compose_mounts() -> None:
    grafana = compose()["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    (source,) = load(GRAFANA / "datasources" / "prometheus.yml")["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert source["isDefault"] is True
    (provider,) = load(GRAFANA / "dashboards" / "tokenmeter.yml")["providers"]
    assert provider["type"] == "file"
    assert mounts["./dashboards"] == provider["options"]["path"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/token-economics.json"


def test_compose_prometheus_scrapes_the_proxy_as_job_tokenmeter_with_the_token() -> None:
    prometheus = compose()["services"]["prometheus"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    (job,) = load(PROM / "prometheus.yml")["scrape_configs"]
    assert job["job_name"] == "tokenmeter"
    assert job["static_configs"] == [{"targets": ["proxy:8080"]}]
    # The token comes from a file (never inline in this file, which is in git) ...
    assert job["authorization"] == {"type": "Bearer", "credentials_file": METRICS_TOKEN_FILE}
    # ... that the container writes from the variable the proxy gets, on a private tmpfs.
    assert prometheus["environment"]["TOKENMETER_METRICS_TOKEN"].startswith(
        "${TOKENMETER_METRICS_TOKEN:?"
    )
    assert str(Path(METRICS_TOKEN_FILE).parent) in prometheus["tmpfs"]
    (script,) = prometheus["command"]
    assert f'"$$TOKENMETER_METRICS_TOKEN" > {METRICS_TOKEN_FILE}' in script
    assert script.startswith("umask 077")
    assert "exec /bin/prometheus --config.file=/etc/prometheus/prometheus.yml" in script


# ---------------------------------------------------------------- Dockerfile


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def final_stage() -> list[tuple[str, str]]:
    steps = dockerfile()
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from:]


def test_image_serves_on_8080_as_non_root_with_a_healthcheck() -> None:
    steps = dict(final_stage())
    assert steps["FROM"].startswith("python:3.11-slim")
    assert steps["USER"] == "10001:10001"
    assert "TOKENMETER_HOST=0.0.0.0" in steps["ENV"]
    assert "TOKENMETER_PORT=8080" in steps["ENV"]
    assert steps["EXPOSE"] == "8080"
    assert "http://127.0.0.1:8080/healthz" in steps["HEALTHCHECK"]
    assert json.loads(steps["ENTRYPOINT"]) + json.loads(steps["CMD"]) == ["tokenmeter", "serve"]


def test_image_copies_only_what_dockerignore_lets_in() -> None:
    allowed = {
        line.removeprefix("!").rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    copied = [
        source
        for op, args in dockerfile()
        if op == "COPY" and not args.startswith("--from")
        for source in args.split()[:-1]
    ]
    assert copied
    for source in copied:
        assert source in allowed, source
        assert (ROOT / source).exists(), f"{source} is copied into the image but missing"


# ---------------------------------------------------------------- Kubernetes


def kustomization() -> dict[str, Any]:
    data: dict[str, Any] = load(K8S / "kustomization.yaml")
    return data


def manifests() -> dict[str, dict[str, Any]]:
    """Every resource kustomize applies, by kind."""
    docs = [
        doc
        for name in kustomization()["resources"]
        for doc in yaml.safe_load_all((K8S / name).read_text())
    ]
    by_kind = {doc["kind"]: doc for doc in docs}
    assert len(by_kind) == len(docs)
    return by_kind


def test_kustomization_lists_every_manifest() -> None:
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert set(kustomization()["resources"]) == files
    assert kustomization()["images"][0]["name"] == "tokenmeter"


MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_validates_against_the_kubernetes_schemas(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc["kind"] == "ServiceMonitor":
            jsonschema.validate(doc, SERVICE_MONITOR)
        else:
            kubernetes_validate.validate(doc, latest_version(), strict=True)


def test_deployment_is_replicated_probed_and_locked_down() -> None:
    deployment = manifests()["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert deployment["spec"]["replicas"] >= 2
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}, probe
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert "memory" in container["resources"]["limits"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the Dockerfile's USER
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]


def test_deployment_spools_to_a_volume_and_never_migrates() -> None:
    kinds = manifests()
    config = kinds["ConfigMap"]["data"]
    (container,) = kinds["Deployment"]["spec"]["template"]["spec"]["containers"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert config["TOKENMETER_SPOOL_DIR"] in mounts
    volumes = kinds["Deployment"]["spec"]["template"]["spec"]["volumes"]
    assert mounts[config["TOKENMETER_SPOOL_DIR"]] in {v["name"] for v in volumes}
    assert config["TOKENMETER_MIGRATE_ON_START"] == "false"
    assert container["envFrom"] == [{"configMapRef": {"name": "tokenmeter-config"}}]
    secrets = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    assert secrets["TOKENMETER_DATABASE_URL"] == {
        "name": "tokenmeter-secrets",
        "key": "database-url",
    }
    assert secrets["TOKENMETER_ADMIN_TOKEN"] == {"name": "tokenmeter-secrets", "key": "admin-token"}
    assert secrets["TOKENMETER_METRICS_TOKEN"] == {
        "name": "tokenmeter-secrets",
        "key": "metrics-token",
    }


def test_termination_grace_covers_prestop_stream_grace_and_the_last_flush() -> None:
    """Kubernetes kills the pod after terminationGracePeriodSeconds: it must cover preStop,
    the streams' grace (TOKENMETER_SHUTDOWN_GRACE_S) and the recorder's last write timeout,
    and not much more (a rollout waits for it)."""
    kinds = manifests()
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    values = {
        k.removeprefix("TOKENMETER_").lower(): v for k, v in kinds["ConfigMap"]["data"].items()
    }
    settings = Settings(**values)
    assert {"shutdown_grace_s", "db_write_timeout_s"} <= set(values)  # stated, not implied
    needed = int(pre_stop[1]) + settings.shutdown_grace_s + settings.db_write_timeout_s
    assert needed < pod["terminationGracePeriodSeconds"] <= needed + 10


def test_compose_stop_grace_covers_the_stream_grace_and_the_last_flush() -> None:
    proxy = compose()["services"]["proxy"]
    grace = float(proxy["environment"]["TOKENMETER_SHUTDOWN_GRACE_S"])
    stop = proxy["stop_grace_period"]
    assert stop.endswith("s")
    assert float(stop[:-1]) > grace + Settings().db_write_timeout_s


def test_configmap_holds_valid_settings() -> None:
    data = manifests()["ConfigMap"]["data"]
    values = {key.removeprefix("TOKENMETER_").lower(): value for key, value in data.items()}
    assert set(values) <= set(Settings.model_fields)
    settings = Settings(**values)
    assert (settings.host, settings.port, settings.workers) == ("0.0.0.0", 8080, 1)  # noqa: S104
    assert settings.migrate_on_start is False


def test_service_pdb_hpa_and_servicemonitor_point_at_the_deployment() -> None:
    kinds = manifests()
    pod_labels = kinds["Deployment"]["spec"]["template"]["metadata"]["labels"]
    service = kinds["Service"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert (
        kinds["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items()
        <= pod_labels.items()
    )
    target = kinds["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == (
        "Deployment",
        kinds["Deployment"]["metadata"]["name"],
    )
    assert kinds["HorizontalPodAutoscaler"]["spec"]["minReplicas"] >= 2
    monitor = kinds["ServiceMonitor"]["spec"]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert monitor["endpoints"][0]["path"] == "/metrics"
    # The operator sends the token the pods check, from the same Secret key.
    assert monitor["endpoints"][0]["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": "tokenmeter-secrets", "key": "metrics-token"},
    }
    # Prometheus names the job after the Service: the rules select up{job="tokenmeter"}.
    assert service["metadata"]["name"] == "tokenmeter"


def test_the_example_secret_holds_no_usable_value() -> None:
    example = load(K8S / "secret.example.yaml")
    values = example["stringData"]
    (container,) = manifests()["Deployment"]["spec"]["template"]["spec"]["containers"]
    read = {e["valueFrom"]["secretKeyRef"]["key"]: e["name"] for e in container["env"]}
    assert set(values) == set(read)  # every key the pods read, and no other
    assert set(values.values()) == {""}
    fields = {read[key].removeprefix("TOKENMETER_").lower(): value for key, value in values.items()}
    with pytest.raises(ValidationError) as refused:
        Settings(**fields)
    assert {error["loc"][0] for error in refused.value.errors()} == set(fields)


def test_migration_job_runs_tokenmeter_db_upgrade_once() -> None:
    job = manifests()["Job"]
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    entrypoint = json.loads(dict(final_stage())["ENTRYPOINT"])
    assert entrypoint + container["args"] == ["tokenmeter", "db", "upgrade"]
    assert (
        container["image"]
        == manifests()["Deployment"]["spec"]["template"]["spec"]["containers"][0]["image"]
    )
    assert pod["restartPolicy"] == "OnFailure"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["env"][0]["valueFrom"]["secretKeyRef"]["key"] == "database-url"
