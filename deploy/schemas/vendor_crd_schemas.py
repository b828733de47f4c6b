"""Refresh the CRD schemas in deploy/schemas/crds/ from npm packages (development only).

The tests validate our KEDA and Prometheus Operator objects offline, so the schemas of those
custom resources are kept in the repository. They come from the kubernetes-models packages on
the npm registry, whose releases before the switch to precompiled validators embed each CRD's
openAPIV3Schema as a JSON literal (``const schema = {...};``). This script packs the exact
versions below with ``npm pack``, cuts that literal out and writes it, unchanged apart from a
``$comment`` naming its origin, to ``crds/<group>_<version>_<kind>.json``.

    python deploy/schemas/vendor_crd_schemas.py   # needs node's npm; CI never runs it
"""
# ruff: noqa: INP001, S603, S607 - a standalone maintenance script, not a package; it runs npm

import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

# npm package → (file inside the package, CRD the package was generated from)
SOURCES = {
    "@kubernetes-models/keda@0.3.2": {
        "keda.sh_v1alpha1_scaledobject.json": (
            "package/keda.sh/v1alpha1/ScaledObject.js",
            "KEDA v2.10.1 release manifest keda-2.10.1.yaml",
        ),
    },
    "@kubernetes-models/prometheus-operator@4.0.0": {
        "monitoring.coreos.com_v1_servicemonitor.json": (
            "package/monitoring.coreos.com/v1/ServiceMonitor.js",
            "prometheus-operator v0.57.0 monitoring.coreos.com_servicemonitors.yaml",
        ),
        "monitoring.coreos.com_v1_podmonitor.json": (
            "package/monitoring.coreos.com/v1/PodMonitor.js",
            "prometheus-operator v0.57.0 monitoring.coreos.com_podmonitors.yaml",
        ),
    },
}

MARKER = "const schema = "


def schema_literal(source: str) -> dict[str, object]:
    """The JSON object assigned to ``const schema`` in a generated kubernetes-models module."""
    start = source.index(MARKER) + len(MARKER)
    end = source.index("\n};", start) + len("\n}")
    schema: dict[str, object] = json.loads(source[start:end])
    return schema


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for package, outputs in SOURCES.items():
            packed = subprocess.run(
                ["npm", "pack", "--silent", "--pack-destination", tmp, package],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.split()[-1]
            with tarfile.open(Path(tmp) / packed) as tar:
                for out_name, (member, upstream) in outputs.items():
                    extracted = tar.extractfile(member)
                    if extracted is None:
                        sys.exit(f"{package}: {member} is not a file")
                    schema = schema_literal(extracted.read().decode())
                    comment = f"From npm {package} ({member}), generated from the {upstream}."
                    document = {"$comment": comment, **schema}
                    target = HERE / "crds" / out_name
                    target.write_text(json.dumps(document, indent=2) + "\n")
                    print(f"wrote {target.relative_to(HERE)}")  # noqa: T201


if __name__ == "__main__":
    main()
