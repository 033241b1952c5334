"""Validates rendered Kubernetes manifests (kustomize output) against the
Kubernetes OpenAPI schemas of kubernetes-validate, strictly (no unknown
field), for each Kubernetes version given. Custom resources, which those
schemas do not cover, are written as a JSON array to --custom-resources for
validate_crds.mjs; a kind that neither knows fails.

    python validate_k8s.py --k8s 1.30.0 --k8s 1.37.0 \
        --custom-resources OUT.json RENDERED.yaml...
"""

import argparse
import json
import sys

import yaml
from kubernetes_validate import utils

CUSTOM_GROUPS = ("monitoring.coreos.com/", "cert-manager.io/")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--k8s", action="append", required=True)
    parser.add_argument("--custom-resources", required=True)
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()

    failures = 0
    custom = []
    for path in args.files:
        with open(path, encoding="utf-8") as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        for doc in docs:
            name = f"{path}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            if doc.get("apiVersion", "").startswith(CUSTOM_GROUPS):
                custom.append({"source": name, "resource": doc})
                continue
            for version in args.k8s:
                try:
                    checked = utils.validate(doc, version, strict=True)
                    print(f"ok   {name} (Kubernetes {checked}, strict)")
                except utils.ValidationError as e:
                    where = ".".join(str(p) for p in e.path)
                    print(f"FAIL {name} (Kubernetes {version}): {where}: {e.message}")
                    failures += 1
                except (utils.SchemaNotFoundError, utils.InvalidSchemaError) as e:
                    print(f"FAIL {name}: {e.message}")
                    failures += 1
    with open(args.custom_resources, "w", encoding="utf-8") as f:
        json.dump(custom, f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
