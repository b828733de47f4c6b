"""Every kustomize overlay rendered by a real kustomize and validated offline (Kubernetes'
schemas and the KEDA / Prometheus Operator CRDs, strictly), then checked against the code:
probes hit real endpoints on the right ports, the worker's grace period outlasts its drain,
every variable is a real setting, the pods meet the restricted security profile, and each
reads the database URL of its own role from a mounted Secret file, never from a variable."""

import os
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from deploy.compose_model import parse_dockerfile
from deploy.k8s_manifests import (
    KUBERNETES_VERSIONS,
    OVERLAYS,
    container_env,
    describe,
    find,
    kustomize,
    of_kind,
    pod_spec,
    render_overlay,
    schema_problems,
)
from deploy.project import (
    K8S_DIR,
    PROMETHEUS_CONFIG,
    REPO_ROOT,
    SETTINGS_BY_SCRIPT,
    console_scripts,
    load_yaml,
    load_yaml_all,
    script_env_names,
    secret_env_names,
    secret_file_env_names,
    settings_from,
)
from queue_api.app import create_app
from queue_api.metrics import QueueStatsCollector
from queue_api.settings import ApiSettings
from queue_devtools.pgcluster import free_port
from queue_worker.http import SidePortServer
from queue_worker.runner import Health
from queue_worker.settings import WorkerSettings

NAMESPACE = "task-queue"
DOCKERFILES = {
    "queue-api": REPO_ROOT / "services" / "api" / "Dockerfile",
    "queue-worker": REPO_ROOT / "services" / "worker" / "Dockerfile",
}
WORKLOAD_KINDS = ("Deployment", "Job")
# What `kubectl apply -k OVERLAY -l task-queue/step=migrate` must pick (README): everything the
# migration Job needs, and nothing that would start the new version early.
MIGRATE_STEP_LABEL = ("task-queue/step", "migrate")
MIGRATE_STEP_KINDS = {"Namespace", "ConfigMap", "Job"}
UNREACHABLE_DB = "postgresql://probe@127.0.0.1:1/never"
# The Secret each container's DATABASE_URL_FILE (and login-roles' other two) is mounted from.
DATABASE_SECRETS = {
    ("queue-migrate", "migrate"): {"DATABASE_URL_FILE": "queue-database-owner"},
    ("queue-migrate", "login-roles"): {
        "DATABASE_URL_FILE": "queue-database-owner",
        "API_DATABASE_URL_FILE": "queue-database-api",
        "WORKER_DATABASE_URL_FILE": "queue-database-worker",
    },
    ("queue-api", "api"): {
        "DATABASE_URL_FILE": "queue-database-api",
        "API_UI_SECRET_FILE": "queue-api-ui",  # the console's session key, not a database's
    },
    ("queue-worker", "worker"): {"DATABASE_URL_FILE": "queue-database-worker"},
}
OWNER_SECRET = "queue-database-owner"  # noqa: S105 - a Secret's name
# Secret files readable by their owner (root) and the pod's fsGroup only.
SECRET_FILE_MODES = {0o400, 0o440}
Serves = Callable[[str], bool]  # whether something answers 200 on a path


@pytest.fixture(name="rendered", scope="module")
def fx_rendered() -> dict[str, list[dict[str, Any]]]:
    return {overlay: render_overlay(overlay) for overlay in OVERLAYS}


@pytest.fixture(name="hpa_variant", scope="module")
def fx_hpa_variant(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The base with the plain-HPA worker autoscaling component instead of KEDA's."""
    directory = tmp_path_factory.mktemp("hpa-variant")
    base = os.path.relpath(K8S_DIR / "base", directory)
    component = os.path.relpath(K8S_DIR / "components" / "hpa-worker-autoscaling", directory)
    (directory / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\n"
        "kind: Kustomization\n"
        f"namespace: {NAMESPACE}\n"
        f"resources: [{base}]\n"
        f"components: [{component}]\n"
    )
    return kustomize(directory)


def _script_of(container: dict[str, Any]) -> str:
    """The console script a container runs: its ``command``, else its image's ENTRYPOINT."""
    if "command" in container:
        return str(container["command"][0])
    return parse_dockerfile(DOCKERFILES[_image_name(container["image"])]).entrypoint[0]


def _image_name(image: str) -> str:
    """queue-api for queue-api, task-queue-api:dev or registry.example.com/x/queue-api:1."""
    name = (
        image.split("@", maxsplit=1)[0]
        .rsplit("/", 1)[-1]
        .split(":", maxsplit=1)[0]
        .removeprefix("task-")
    )
    assert name in DOCKERFILES, f"{image}: not one of our images"
    return name


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def _workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in WORKLOAD_KINDS]


def _pod_containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The init containers, then the others."""
    return [*spec.get("initContainers", []), *spec["containers"]]


def _containers(docs: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(w, c) for w in _workloads(docs) for c in _pod_containers(pod_spec(w))]


def _secret_file(spec: dict[str, Any], container: dict[str, Any], path: str) -> dict[str, Any]:
    """The Secret volume that the file at ``path`` in ``container`` comes from; fails unless
    the file is one of its items, mounted read-only."""
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        directory = mount["mountPath"].rstrip("/") + "/"
        volume = volumes[mount["name"]]
        if not path.startswith(directory) or "secret" not in volume:
            continue
        assert mount.get("readOnly") is True, f"{container['name']}: {directory} is writable"
        items = volume["secret"].get("items")
        assert items, f"{mount['name']}: list the keys it mounts (items)"
        assert path.removeprefix(directory) in {item["path"] for item in items}, path
        return dict(volume["secret"])
    raise AssertionError(f"{container['name']}: {path} is not in a mounted Secret volume")


@pytest.fixture(name="local_secret_file")
def fx_local_secret_file(tmp_path: Path) -> str:
    """A file holding a database URL, standing in for a mounted Secret's."""
    path = tmp_path / "DATABASE_URL"
    path.write_text(UNREACHABLE_DB + "\n")
    return str(path)


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_is_valid(
    rendered: dict[str, list[dict[str, Any]]], overlay: str, version: str
) -> None:
    problems = [str(p) for doc in rendered[overlay] for p in schema_problems(doc, version)]
    assert problems == []


def test_the_hpa_alternative_is_valid_and_replaces_keda(hpa_variant: list[dict[str, Any]]) -> None:
    problems = [str(p) for d in hpa_variant for p in schema_problems(d, KUBERNETES_VERSIONS[0])]
    assert problems == []
    hpa = find(hpa_variant, "HorizontalPodAutoscaler", "queue-worker")
    assert hpa["spec"]["metrics"][0]["external"]["metric"]["name"] == "queue_jobs_due"
    assert not of_kind(hpa_variant, "ScaledObject")
    assert "replicas" not in find(hpa_variant, "Deployment", "queue-worker")["spec"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_at_most_one_autoscaler_per_deployment(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    docs = rendered[overlay]
    targets = [
        h["spec"]["scaleTargetRef"]["name"] for h in of_kind(docs, "HorizontalPodAutoscaler")
    ]
    targets += [s["spec"]["scaleTargetRef"]["name"] for s in of_kind(docs, "ScaledObject")]
    assert len(targets) == len(set(targets)), f"two autoscalers on one Deployment: {targets}"
    for deployment in of_kind(docs, "Deployment"):
        name = deployment["metadata"]["name"]
        autoscaled = name in targets
        # An autoscaled Deployment leaves `replicas` to its autoscaler; the others set it.
        assert ("replicas" in deployment["spec"]) != autoscaled, (overlay, name)
    for target in targets:
        find(docs, "Deployment", target)


def test_dev_runs_one_of_each_and_prod_autoscales_workers_with_keda(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    dev, prod = rendered["dev"], rendered["prod"]
    assert [d["spec"]["replicas"] for d in of_kind(dev, "Deployment")] == [1, 1]
    assert not of_kind(dev, "HorizontalPodAutoscaler")
    assert not of_kind(dev, "ScaledObject")
    assert _config_map(dev, "queue-common-config")["data"]["LOG_LEVEL"] == "DEBUG"
    scaled = find(prod, "ScaledObject", "queue-worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "queue-worker"
    assert scaled["spec"]["minReplicaCount"] >= 2
    assert find(prod, "HorizontalPodAutoscaler", "queue-api")["spec"]["minReplicas"] >= 2
    assert _config_map(prod, "queue-common-config")["data"]["LOG_LEVEL"] == "INFO"


def _config_map(docs: list[dict[str, Any]], base_name: str) -> dict[str, Any]:
    """The generated ConfigMap ``base_name``-<hash of its content>."""
    (config_map,) = [
        d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"].startswith(f"{base_name}-")
    ]
    return config_map


def test_the_queue_depth_metric_exists_and_is_not_counted_per_api_replica(
    rendered: dict[str, list[dict[str, Any]]], hpa_variant: list[dict[str, Any]]
) -> None:
    exported = {family.name for family in QueueStatsCollector().collect()}
    (trigger,) = find(rendered["prod"], "ScaledObject", "queue-worker")["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    query = trigger["metadata"]["query"]
    assert "queue_jobs_due" in exported
    assert 'queue_jobs_due{job="queue-api",queue="default"}' in query
    # Every API replica reports the same database-wide count: a sum would multiply it.
    assert query.startswith("max(")
    assert trigger["metadata"]["serverAddress"].startswith("http://")
    assert int(trigger["metadata"]["threshold"]) > 0
    hpa = find(hpa_variant, "HorizontalPodAutoscaler", "queue-worker")
    assert hpa["spec"]["metrics"][0]["external"]["metric"]["name"] in exported


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_worker_grace_period_outlasts_its_drain(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    docs = rendered[overlay]
    worker = find(docs, "Deployment", "queue-worker")
    (container,) = pod_spec(worker)["containers"]
    env = container_env(docs, container)
    default = WorkerSettings.model_fields["shutdown_grace_s"].default
    drain_s = float(env.get("WORKER_SHUTDOWN_GRACE_S") or default)
    grace_s = pod_spec(worker)["terminationGracePeriodSeconds"]
    assert grace_s > drain_s, f"{overlay}: SIGKILL after {grace_s} s, drain takes {drain_s} s"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_variable_is_a_setting_of_the_process(
    rendered: dict[str, list[dict[str, Any]]],
    overlay: str,
    monkeypatch: pytest.MonkeyPatch,
    local_secret_file: str,
) -> None:
    docs = rendered[overlay]
    for workload, container in _containers(docs):
        script = _script_of(container)
        assert script in SETTINGS_BY_SCRIPT, (describe(workload), script)
        assert script in console_scripts(_image_name(container["image"])), describe(workload)
        env = container_env(docs, container)
        unknown = set(env) - script_env_names(script)
        assert not unknown, f"{describe(workload)} sets {sorted(unknown)}; {script} ignores them"
        assert "DATABASE_URL_FILE" in env, f"{describe(workload)}: the URL from a Secret file"
        # The values load: the process would not exit with "invalid configuration". Each
        # secret file (mounted in the pod) is a local one here.
        values = {
            name: local_secret_file if name in secret_file_env_names() else str(value)
            for name, value in env.items()
        }
        for cls in SETTINGS_BY_SCRIPT[script]:
            settings_from(monkeypatch, values, cls)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_is_ever_a_variable_only_a_mounted_file(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    for workload, container in _containers(rendered[overlay]):
        where = f"{overlay} {describe(workload)} {container['name']}"
        spec = pod_spec(workload)
        assert all("configMapRef" in source for source in container.get("envFrom", [])), where
        env = {entry["name"]: entry for entry in container.get("env", [])}
        assert not set(env) & secret_env_names(), f"{where}: a secret as a variable"
        for entry in env.values():
            assert "valueFrom" not in entry, f"{where}: {entry['name']} from a Secret's value"
        for name in set(env) & secret_file_env_names():
            volume = _secret_file(spec, container, env[name]["value"])
            mode = volume["defaultMode"]
            assert mode in SECRET_FILE_MODES, f"{where}: mode {oct(mode)}"
            # Group-readable files are readable by the app only through the pod's fsGroup.
            assert spec["securityContext"]["fsGroup"] == spec["securityContext"]["runAsGroup"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_container_reads_the_database_secret_of_its_own_role(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    seen = set()
    for workload, container in _containers(rendered[overlay]):
        key = (workload["metadata"]["name"], container["name"])
        seen.add(key)
        spec = pod_spec(workload)
        env = {entry["name"]: entry.get("value") for entry in container.get("env", [])}
        files = {name: env[name] for name in set(env) & secret_file_env_names()}
        read = {
            name: _secret_file(spec, container, path)["secretName"] for name, path in files.items()
        }
        assert read == DATABASE_SECRETS[key], key
        mounted = {
            volume["secret"]["secretName"]
            for volume in spec.get("volumes", [])
            if "secret" in volume
            and volume["name"] in {m["name"] for m in container.get("volumeMounts", [])}
        }
        assert mounted == set(read.values()), f"{key}: mounts {mounted}"
    assert seen == set(DATABASE_SECRETS)
    # The API and the workers never receive the owner's credentials, not even unmounted.
    for name in ("queue-api", "queue-worker"):
        volumes = pod_spec(find(rendered[overlay], "Deployment", name)).get("volumes", [])
        secrets = {v["secret"]["secretName"] for v in volumes if "secret" in v}
        assert OWNER_SECRET not in secrets, name
        its_container = "api" if name == "queue-api" else "worker"
        assert secrets == set(DATABASE_SECRETS[name, its_container].values()), f"{name}: {secrets}"


def _probe_urls(container: dict[str, Any]) -> list[tuple[str, str]]:
    probes = [container.get(kind) for kind in ("startupProbe", "livenessProbe", "readinessProbe")]
    return [(p["httpGet"]["port"], p["httpGet"]["path"]) for p in probes if p is not None]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_hit_real_endpoints_on_the_configured_ports(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    docs = rendered[overlay]
    api_routes = {
        route.path for route in create_app(ApiSettings(DATABASE_URL=UNREACHABLE_DB)).routes
    }
    side_port = SidePortServer("127.0.0.1", free_port(), Health)
    side_port.start()

    def api_serves(path: str) -> bool:
        return path in api_routes

    def worker_serves(path: str) -> bool:
        return _serves(side_port, path)

    checks: list[tuple[str, str, Serves]] = [
        ("queue-api", "API_PORT", api_serves),
        ("queue-worker", "WORKER_METRICS_PORT", worker_serves),
    ]
    try:
        for name, port_setting, served in checks:
            (container,) = pod_spec(find(docs, "Deployment", name))["containers"]
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            env = container_env(docs, container)
            probes = _probe_urls(container)
            assert {kind for kind in container if kind.endswith("Probe")} >= {
                "startupProbe",
                "livenessProbe",
            }, name
            for port, path in probes:
                assert port in ports, f"{name}: probe port {port} is not a named container port"
                assert str(ports[port]) == env[port_setting], f"{name}: {port} ≠ {port_setting}"
                assert served(path), f"{name}: nothing serves {path}"
        (api,) = pod_spec(find(docs, "Deployment", "queue-api"))["containers"]
        assert api["livenessProbe"]["httpGet"]["path"] == "/health", "liveness never asks the DB"
        assert api["readinessProbe"]["httpGet"]["path"] == "/ready"
        (worker,) = pod_spec(find(docs, "Deployment", "queue-worker"))["containers"]
        assert worker["livenessProbe"]["httpGet"]["path"] == "/healthz"
    finally:
        side_port.stop()


def _serves(server: SidePortServer, path: str) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=5) as response:
        return bool(response.status == 200)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_meet_the_restricted_security_profile(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    uid = int(str(parse_dockerfile(DOCKERFILES["queue-api"]).user).split(":")[0])
    for workload in _workloads(rendered[overlay]):
        where = f"{overlay} {describe(workload)}"
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["runAsUser"] == uid, where
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert spec["automountServiceAccountToken"] is False, where
        empty_dirs = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for container in _pod_containers(spec):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]  # noqa: S108 - an emptyDir
            assert [m["name"] for m in tmp] == [next(iter(empty_dirs))], f"{where}: /tmp"
            for kind in ("requests", "limits"):
                assert set(container["resources"][kind]) == {"cpu", "memory"}, f"{where} {kind}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rolling_updates_never_lower_capacity(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    for deployment in of_kind(rendered[overlay], "Deployment"):
        strategy = deployment["spec"]["strategy"]
        assert strategy["type"] == "RollingUpdate"
        assert strategy["rollingUpdate"]["maxUnavailable"] == 0, describe(deployment)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_budgets_and_monitors_select_the_pods(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    docs = rendered[overlay]
    pods = {d["metadata"]["name"]: d for d in of_kind(docs, "Deployment")}
    labels = {name: d["spec"]["template"]["metadata"]["labels"] for name, d in pods.items()}
    assert labels["queue-api"]["app.kubernetes.io/name"] == "queue-api"
    assert labels["queue-worker"]["app.kubernetes.io/name"] == "queue-worker"
    for name, deployment in pods.items():
        assert _selects(deployment["spec"]["selector"]["matchLabels"], labels[name]), name
    service = find(docs, "Service", "queue-api")
    assert _selects(service["spec"]["selector"], labels["queue-api"])
    (api,) = pod_spec(pods["queue-api"])["containers"]
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= {p["name"] for p in api["ports"]}
    for budget in of_kind(docs, "PodDisruptionBudget"):
        selector = budget["spec"]["selector"]["matchLabels"]
        assert sum(_selects(selector, pod_labels) for pod_labels in labels.values()) == 1
    jobs = {job["job_name"] for job in load_yaml(PROMETHEUS_CONFIG)["scrape_configs"]}
    for monitor in of_kind(docs, "ServiceMonitor"):
        selector = monitor["spec"]["selector"]["matchLabels"]
        assert _selects(selector, service["metadata"]["labels"])
        ports = {p["name"] for p in service["spec"]["ports"]}
        assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports
        # The job label is the same as compose's Prometheus gives: one dashboard for both.
        assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] in jobs
    for monitor in of_kind(docs, "PodMonitor"):
        selector = monitor["spec"]["selector"]["matchLabels"]
        (target,) = [name for name, pod_labels in labels.items() if _selects(selector, pod_labels)]
        (container,) = pod_spec(pods[target])["containers"]
        ports = {p["name"] for p in container["ports"]}
        assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} <= ports
        assert labels[target][monitor["spec"]["jobLabel"]] in jobs
    if overlay == "prod":
        assert of_kind(docs, "ServiceMonitor")
        assert of_kind(docs, "PodMonitor")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_everything_lives_in_the_namespace_and_no_secret_is_rendered(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    docs = rendered[overlay]
    assert find(docs, "Namespace", NAMESPACE)
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == NAMESPACE, describe(doc)
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == NAMESPACE, describe(doc)
    assert not of_kind(docs, "Secret"), "the real Secret is created by hand, never committed"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_secret_example_has_what_the_pods_read(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    example_path = K8S_DIR / "base" / "secret.example.yaml"
    examples = {doc["metadata"]["name"]: doc for doc in load_yaml_all(example_path.read_text())}
    for example in examples.values():
        assert list(schema_problems(example, KUBERNETES_VERSIONS[0])) == []
        assert example["metadata"]["namespace"] == NAMESPACE
    base = load_yaml(K8S_DIR / "base" / "kustomization.yaml")
    assert example_path.name not in base["resources"], "an example, never applied"
    read = set()
    for workload in _workloads(rendered[overlay]):
        for volume in pod_spec(workload).get("volumes", []):
            if "secret" in volume:
                name = volume["secret"]["secretName"]
                assert name in examples, f"{describe(workload)}: {name}"
                keys = {item["key"] for item in volume["secret"]["items"]}
                assert keys <= set(examples[name]["stringData"]), f"{describe(workload)}: {name}"
                read.add(name)
    assert read == set(examples), "every example Secret is read by some pod"
    # One role per Secret: the owner, queue_api and queue_worker, as the README says.
    users = {
        name: urlsplit(doc["stringData"]["DATABASE_URL"]).username
        for name, doc in examples.items()
        if "DATABASE_URL" in doc["stringData"]
    }
    assert users["queue-database-api"] == "queue_api"
    assert users["queue-database-worker"] == "queue_worker"
    assert len(set(users.values())) == 3


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_migrate_job_can_be_applied_alone_before_the_rollout(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    docs = rendered[overlay]
    job = find(docs, "Job", "queue-migrate")
    # The migrations first, then the login roles in the groups that migration 0006 makes.
    (container,) = pod_spec(job)["initContainers"]
    (roles,) = pod_spec(job)["containers"]
    assert container["command"] == ["queue-migrate"]
    assert roles["command"] == ["queue-login-roles"]
    assert "queue-migrate" in console_scripts(_image_name(container["image"]))
    api_image = pod_spec(find(docs, "Deployment", "queue-api"))["containers"][0]["image"]
    assert container["image"] == api_image, "the migrations of the release being rolled out"
    assert roles["image"] == api_image
    assert pod_spec(job)["restartPolicy"] == "Never"
    assert job["spec"]["ttlSecondsAfterFinished"] > 0
    key, value = MIGRATE_STEP_LABEL
    selected = [d for d in docs if d["metadata"].get("labels", {}).get(key) == value]
    assert {d["kind"] for d in selected} == MIGRATE_STEP_KINDS
    # Every ConfigMap the Job reads is applied with it.
    needed = {source["configMapRef"]["name"] for source in container["envFrom"]}
    assert needed <= {d["metadata"]["name"] for d in of_kind(selected, "ConfigMap")}


def test_prod_images_are_pinned_and_dev_uses_the_compose_builds(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    for _, container in _containers(rendered["prod"]):
        image = container["image"]
        tag = image.split("@")[0].rsplit(":", 1)
        assert "@sha256:" in image or (len(tag) == 2 and tag[1] not in {"latest", "dev"}), image
        assert "/" in image, f"{image}: a registry image"
    for _, container in _containers(rendered["dev"]):
        # `TAG=dev docker compose build` tags task-queue-{api,worker}:dev.
        assert container["image"] in {"task-queue-api:dev", "task-queue-worker:dev"}


def test_the_documented_commands_name_real_paths() -> None:
    # The documentation site's Kubernetes page (docs/, built by `make docs`).
    readme = (REPO_ROOT / "docs" / "how-to" / "kubernetes.md").read_text()
    for overlay in OVERLAYS:
        assert f"deploy/k8s/overlays/{overlay}" in readme
    for component in ("keda-worker-autoscaling", "hpa-worker-autoscaling", "monitoring"):
        assert (K8S_DIR / "components" / component / "kustomization.yaml").exists()
        assert component in readme
    assert "task-queue/step=migrate" in readme
    assert "kubectl -n task-queue wait --for=condition=complete job/queue-migrate" in readme
    assert Path(K8S_DIR / "base" / "secret.example.yaml").exists()
