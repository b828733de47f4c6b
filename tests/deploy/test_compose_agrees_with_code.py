"""compose.yaml agrees with the code and with the files it mounts: every variable it sets is a
real setting that loads, the ports are the ones the settings and Prometheus use, the commands
are console scripts the images install, the services start in the right order, and each
connects to the database as its own role, with a secret file of its own."""

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from deploy.compose_model import (
    load_compose,
    local_env,
    secret_file,
    secret_value,
    service_run,
)
from deploy.project import (
    COMPOSE_FILE,
    COMPOSE_OVERRIDE_EXAMPLE,
    GRAFANA_DIR,
    PROMETHEUS_CONFIG,
    REPO_ROOT,
    SETTINGS_BY_SCRIPT,
    console_scripts,
    load_yaml,
    script_env_names,
    secret_env_names,
    secret_file_env_names,
    settings_from,
)
from queue_api.settings import ApiSettings
from queue_worker.settings import WorkerSettings

OUR_SERVICES = ("migrate", "login-roles", "api", "worker")
EXPECTED_SERVICES = {
    "postgres",
    "migrate",
    "login-roles",
    "metrics-key",
    "api",
    "worker",
    "prometheus",
    "grafana",
    "mailpit",
}
NOT_SETTINGS = {"PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PYTHONFAULTHANDLER"}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us)")
_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 0.000001}


@pytest.fixture(name="compose", scope="module")
def fx_compose() -> Any:
    return load_compose()


def _duration_s(value: str) -> float:
    parts = _DURATION.findall(value)
    assert parts, f"not a compose duration: {value!r}"
    assert "".join(n + u for n, u in parts) == value, f"not a compose duration: {value!r}"
    return sum(float(number) * _SECONDS[unit] for number, unit in parts)


def _scrape_job(name: str) -> dict[str, Any]:
    config = load_yaml(PROMETHEUS_CONFIG)
    jobs = [job for job in config["scrape_configs"] if job["job_name"] == name]
    assert len(jobs) == 1, f"{PROMETHEUS_CONFIG}: job {name} defined {len(jobs)} times"
    job: dict[str, Any] = jobs[0]
    return job


def _dns_targets(job: dict[str, Any]) -> Iterator[tuple[str, int]]:
    for sd in job.get("dns_sd_configs", []):
        for name in sd["names"]:
            yield name, int(sd["port"])


def test_the_services_are_the_documented_topology(compose: Any) -> None:
    assert set(compose["services"]) == EXPECTED_SERVICES


def test_prometheus_reads_the_api_key_that_metrics_key_writes(compose: Any) -> None:
    # The API's /metrics needs a key: the scrape job's credentials file must be in the volume
    # the metrics-key one-shot writes, and Prometheus must start only once it is written.
    credentials = Path(_scrape_job("queue-api")["authorization"]["credentials_file"])
    writer, reader = compose["services"]["metrics-key"], compose["services"]["prometheus"]
    written = {v.split(":")[0]: v.split(":")[1] for v in writer["volumes"]}
    read = {v.split(":")[0]: v.split(":")[1] for v in reader["volumes"]}
    shared = [name for name in written if read.get(name) == written[name]]
    assert [str(credentials.parent)] == [written[name] for name in shared]
    assert str(credentials) in writer["command"][0]
    assert "--scopes metrics:read" in writer["command"][0]
    assert reader["depends_on"]["metrics-key"] == {"condition": "service_completed_successfully"}


@pytest.mark.parametrize("service", OUR_SERVICES)
def test_commands_are_console_scripts_the_image_installs(compose: Any, service: str) -> None:
    run = service_run(compose, service)
    assert run.image is not None, f"{service} is built from one of our Dockerfiles"
    (package,) = set(run.image.sync_packages)
    assert run.argv, f"{service} has no command"
    assert run.argv[0] in console_scripts(package), (run.argv, package)
    assert run.argv[0] in SETTINGS_BY_SCRIPT, f"{run.argv[0]}: which settings does it read?"
    assert run.argv == [run.argv[0]], "our scripts take their configuration from the env only"


@pytest.mark.parametrize(
    ("service", "script"), [("migrate", "queue-migrate"), ("login-roles", "queue-login-roles")]
)
def test_the_one_shots_run_from_the_api_image(compose: Any, service: str, script: str) -> None:
    one_shot, api = compose["services"][service], compose["services"]["api"]
    assert service_run(compose, service).argv == [script]
    assert one_shot["image"] == api["image"]
    assert one_shot["build"] == api["build"]


@pytest.mark.parametrize("service", OUR_SERVICES)
def test_every_variable_set_is_a_setting_of_that_process(compose: Any, service: str) -> None:
    run = service_run(compose, service)
    known = script_env_names(run.argv[0])
    unknown = set(run.env) - NOT_SETTINGS - known
    assert not unknown, f"{service} sets {sorted(unknown)}, which {run.argv[0]} never reads"


@pytest.mark.parametrize("service", OUR_SERVICES)
def test_the_settings_load_from_the_compose_environment(
    compose: Any, service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = service_run(compose, service)
    for cls in SETTINGS_BY_SCRIPT[run.argv[0]]:
        # Raises on a value the process would refuse, or a secret file it could not read.
        settings_from(monkeypatch, local_env(compose, run), cls)


def test_the_api_port_is_published_and_scraped(
    compose: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = service_run(compose, "api")
    settings: ApiSettings = settings_from(monkeypatch, local_env(compose, run), ApiSettings)
    targets = [str(p).rsplit(":", 1)[-1] for p in compose["services"]["api"]["ports"]]
    assert targets == [str(settings.port)], "the published port must map to API_PORT"
    assert settings.host == "0.0.0.0", "reachable from the other containers"  # noqa: S104
    assert list(_dns_targets(_scrape_job("queue-api"))) == [("api", settings.port)]


def test_every_worker_replica_is_scraped_on_its_metrics_port(
    compose: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = service_run(compose, "worker")
    settings: WorkerSettings = settings_from(monkeypatch, local_env(compose, run), WorkerSettings)
    assert compose["services"]["worker"]["expose"] == [str(settings.metrics_port)]
    # DNS service discovery on the service name finds one A record per replica.
    assert list(_dns_targets(_scrape_job("queue-worker"))) == [("worker", settings.metrics_port)]


def test_workers_scale_and_drain(compose: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    worker = compose["services"]["worker"]
    assert "container_name" not in worker, "--scale needs compose to name the containers"
    assert "ports" not in worker, "a published host port can belong to one replica only"
    assert int(worker["deploy"]["replicas"]) == 2
    settings: WorkerSettings = settings_from(
        monkeypatch, local_env(compose, service_run(compose, "worker")), WorkerSettings
    )
    assert _duration_s(worker["stop_grace_period"]) > settings.shutdown_grace_s


def test_the_services_start_in_order(compose: Any) -> None:
    services = compose["services"]
    assert services["postgres"]["healthcheck"]["test"], "migrate waits for a healthy database"
    assert services["postgres"]["volumes"] == ["pgdata:/var/lib/postgresql"]
    assert "pgdata" in compose["volumes"]
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    completed = {"condition": "service_completed_successfully"}
    # The login roles need the groups migration 0006 makes.
    assert services["login-roles"]["depends_on"] == {"migrate": completed}
    for name in ("migrate", "login-roles"):
        assert services[name]["restart"] == "no", f"{name}: one-shot"
        assert services[name]["healthcheck"] == {"disable": True}
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["migrate"] == completed, name
        assert services[name]["depends_on"]["login-roles"] == completed, name
    assert services["metrics-key"]["depends_on"] == {"login-roles": completed}


# Who each service connects as: the secret its DATABASE_URL_FILE names, and for login-roles
# the secrets of the services whose roles it makes.
CONNECTS_WITH = {
    ("migrate", "DATABASE_URL_FILE"): "owner-database-url",
    ("login-roles", "DATABASE_URL_FILE"): "owner-database-url",
    ("login-roles", "API_DATABASE_URL_FILE"): "api-database-url",
    ("login-roles", "WORKER_DATABASE_URL_FILE"): "worker-database-url",
    ("metrics-key", "DATABASE_URL_FILE"): "api-database-url",
    ("api", "DATABASE_URL_FILE"): "api-database-url",
    ("api", "API_UI_SECRET_FILE"): "api-ui-secret",  # not a database's, but the API's own
    ("worker", "DATABASE_URL_FILE"): "worker-database-url",
}
OWNER_SECRETS = {"owner-database-url", "postgres-password"}


def test_each_service_connects_with_its_own_secret_file(compose: Any) -> None:
    for (service, variable), secret in CONNECTS_WITH.items():
        assert service_run(compose, service).secret_path(variable) == secret, (service, variable)
    for service in ("api", "worker", "metrics-key"):
        mounted = set(compose["services"][service]["secrets"])
        assert not mounted & OWNER_SECRETS, f"{service} must never see the owner's credentials"
        own = {secret for (user, _), secret in CONNECTS_WITH.items() if user == service}
        assert mounted == own, f"{service}: its own secrets only, {mounted}"
    # The roles login-roles makes are the ones api and worker log in as: the same files.
    assert set(compose["services"]["login-roles"]["secrets"]) == {
        secret for (service, _), secret in CONNECTS_WITH.items() if service == "login-roles"
    }


def test_no_secret_is_ever_a_plain_environment_value(compose: Any) -> None:
    secrets = secret_env_names() | {"POSTGRES_PASSWORD"}
    for name in compose["services"]:
        run = service_run(compose, name)
        assert not set(run.env) & secrets, f"{name} sets a secret in its environment"
        for variable in set(run.service_env) & (
            secret_file_env_names() | {"POSTGRES_PASSWORD_FILE"}
        ):
            run.secret_path(variable)  # a file compose mounts from a secret


def test_the_urls_point_at_the_postgres_service_as_three_roles(compose: Any) -> None:
    postgres = compose["services"]["postgres"]["environment"]
    urls = {
        secret: urlsplit(secret_value(compose, secret))
        for secret in ("owner-database-url", "api-database-url", "worker-database-url")
    }
    for secret, url in urls.items():
        assert (url.scheme, url.hostname, url.port) == ("postgresql", "postgres", 5432), secret
        assert url.path == f"/{postgres['POSTGRES_DB']}", secret
        assert url.password, f"{secret}: PostgreSQL's image asks for a password on the network"
    owner = urls["owner-database-url"]
    # PostgreSQL initialises the owner with the password its entrypoint reads from the secret.
    run = service_run(compose, "postgres")
    assert run.secrets == {"/run/secrets/postgres-password": "postgres-password"}
    assert "$(cat /run/secrets/postgres-password)" in run.argv[2]
    assert run.argv[3:] == ["docker-entrypoint.sh", "postgres"], "the image's own, as before"
    assert owner.username == postgres["POSTGRES_USER"]
    assert owner.password == secret_value(compose, "postgres-password")
    # Migration 0006's README example names them; three roles, three passwords.
    assert urls["api-database-url"].username == "queue_api"
    assert urls["worker-database-url"].username == "queue_worker"
    assert len({url.password for url in urls.values()}) == 3


def test_the_committed_secrets_say_they_are_for_development_only(compose: Any) -> None:
    for name in compose["secrets"]:
        path = secret_file(compose, name)
        assert path.parent == REPO_ROOT / "deploy" / "compose" / "secrets", name
        assert path.read_text().endswith("\n"), f"{name}: a text file, as an editor saves it"
    notice = (REPO_ROOT / "deploy" / "compose" / "secrets" / "README.md").read_text()
    assert "never use them anywhere else" in notice.splitlines()[0]
    assert "QUEUE_SECRETS_DIR" in notice


def test_send_email_goes_to_mailpit(compose: Any) -> None:
    env = service_run(compose, "worker").env
    mailpit = compose["services"]["mailpit"]
    assert env["SMTP_HOST"] == "mailpit"
    assert env["SMTP_PORT"] in mailpit["expose"]
    assert [str(p).rsplit(":", 1)[-1] for p in mailpit["ports"]] == ["8025"], "the web inbox"


def test_third_party_images_are_pinned(compose: Any) -> None:
    for name, service in compose["services"].items():
        if "build" in service:
            continue
        image = service["image"]
        assert ":" in image, f"{name}: {image} has no tag"
        assert image.rsplit(":", 1)[1] not in {"latest", ""}, f"{name}: {image} is not pinned"


def test_prometheus_reads_the_mounted_configuration(compose: Any) -> None:
    prometheus = compose["services"]["prometheus"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    assert PROMETHEUS_CONFIG.exists()
    for rule_file in load_yaml(PROMETHEUS_CONFIG).get("rule_files", []):
        assert (PROMETHEUS_CONFIG.parent / rule_file).exists(), rule_file
    assert [str(p).rsplit(":", 1)[-1] for p in prometheus["ports"]] == ["9090"]


def test_grafana_loads_the_provisioned_datasource_and_dashboard(compose: Any) -> None:
    grafana = compose["services"]["grafana"]
    env = grafana["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer", "anonymous users may only look"
    mounts = dict(str(v).removesuffix(":ro").split(":", 1) for v in grafana["volumes"])
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    dashboards_mount = mounts["./deploy/grafana/dashboards"]
    providers = load_yaml(GRAFANA_DIR / "provisioning" / "dashboards" / "task-queue.yml")
    assert [p["options"]["path"] for p in providers["providers"]] == [dashboards_mount]
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(dashboards_mount + "/")
    assert (GRAFANA_DIR / "dashboards" / home.removeprefix(dashboards_mount + "/")).exists()
    datasources = load_yaml(GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml")
    urls = [urlsplit(d["url"]) for d in datasources["datasources"] if d["type"] == "prometheus"]
    assert [(u.hostname, u.port) for u in urls] == [("prometheus", 9090)]


@pytest.mark.parametrize("path", [COMPOSE_FILE, COMPOSE_OVERRIDE_EXAMPLE], ids=lambda p: p.name)
def test_bind_mounted_paths_exist(path: Any) -> None:
    for name, service in load_compose(path)["services"].items():
        for volume in service.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
            if source.startswith("."):
                assert (REPO_ROOT / source).exists(), f"{path.name} {name}: {source} is missing"


def test_the_override_example_mounts_source_over_the_installed_packages() -> None:
    override = load_compose(COMPOSE_OVERRIDE_EXAMPLE)
    base = load_compose()
    for name in ("api", "worker"):
        image = service_run(base, name).image
        assert image is not None
        python = re.search(r"python:(\d+\.\d+)", image.base)
        assert python is not None, image.base
        for volume in override["services"][name]["volumes"]:
            package = volume["source"].rsplit("/", 1)[-1]
            site = f"/app/.venv/lib/python{python[1]}/site-packages"
            assert volume["target"] == f"{site}/{package}", volume
    worker = override["services"]["worker"]
    assert worker["deploy"]["replicas"] == 1, "it publishes the metrics port: one replica only"
    assert override["services"]["api"]["environment"]["LOG_FORMAT"] == "console"


def test_every_compose_variable_is_documented() -> None:
    variables = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", COMPOSE_FILE.read_text()))
    # The documentation site's page on compose (docs/, built by `make docs`).
    page = (REPO_ROOT / "docs" / "how-to" / "docker-compose.md").read_text()
    undocumented = sorted(v for v in variables if f"`{v}`" not in page)
    assert not undocumented, (
        f"compose.yaml reads {undocumented}; document them in docs/how-to/docker-compose.md"
    )


def test_the_images_healthchecks_cover_api_and_worker(compose: Any) -> None:
    for name in ("api", "worker"):
        run = service_run(compose, name)
        assert run.image is not None
        assert run.image.healthcheck, f"{name}: the image's HEALTHCHECK is what compose uses"
        assert "healthcheck" not in compose["services"][name]
