"""Wire objects: one pydantic model per object, snake_case on HTTP, camelCase in resources."""

GROUP = "tether.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
UPDATED_ANNOTATION = f"{GROUP}/updated"
"""When a Webhook's or a Trigger's spec last changed (their update_time)."""


def resource(kind: str, namespace: str, name: str, spec: dict) -> dict:
    """A new Tether custom resource: `spec` in its Kubernetes spelling."""
    meta = {"name": name, "namespace": namespace}
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": meta, "spec": spec}
