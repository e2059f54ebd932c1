"""CustomResourceDefinitions generated from the pydantic models, so the two can never disagree.

`python -m tether.crds` writes crds/*.yaml; `python -m tether.crds --check` fails when they drift.
"""

from __future__ import annotations

import argparse
import copy
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from tether.api import GROUP, VERSION
from tether.api.agent import AgentSpec, AgentStatus
from tether.api.environment import EnvironmentSpec, EnvironmentStatus
from tether.api.interaction import InteractionSpec, InteractionStatus
from tether.api.model import ModelSpec, ModelStatus
from tether.api.trigger import TriggerSpec, TriggerStatus
from tether.api.webhook import WebhookSpec, WebhookStatus

ROOT = Path(__file__).resolve().parent.parent
CRD_DIR = ROOT / "crds"
CHART_CRD_DIR = ROOT / "charts" / "tether" / "crds"
"""The Helm chart carries the same CRDs; both copies are written and checked together."""

_DROPPED_KEYS = {"title", "default", "discriminator", "$defs"}
_PRESERVE = "x-kubernetes-preserve-unknown-fields"


@dataclass(frozen=True)
class Resource:
    kind: str
    plural: str
    spec: type[BaseModel]
    status: type[BaseModel]
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ("tether",)
    printer_columns: tuple[dict[str, Any], ...] = ()
    spec_rules: tuple[dict[str, str], ...] = ()
    spec_required: bool = True
    selectable_fields: tuple[str, ...] = ()


IMMUTABLE = {"rule": "self == oldSelf", "message": "spec is immutable after creation"}

RESOURCES: tuple[Resource, ...] = (
    Resource(
        kind="Interaction",
        plural="interactions",
        short_names=("ix",),
        selectable_fields=(".status.phase", ".spec.model", ".spec.agent"),
        spec=InteractionSpec,
        status=InteractionStatus,
        printer_columns=(
            {"name": "Model", "type": "string", "jsonPath": ".spec.model"},
            {"name": "Agent", "type": "string", "jsonPath": ".spec.agent"},
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Tokens", "type": "integer", "jsonPath": ".status.usage.totalTokens"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ),
        spec_rules=(
            IMMUTABLE,
            {
                "rule": "!(has(self.model) && has(self.agent))",
                "message": "spec.model and spec.agent are mutually exclusive: set exactly one",
            },
            {
                "rule": "has(self.model) || has(self.agent)",
                "message": "one of spec.model or spec.agent is required",
            },
            {
                "rule": "!has(self.generationConfig) || has(self.model)",
                "message": "spec.generationConfig applies only to model interactions (spec.model)",
            },
            {
                "rule": "!has(self.agentConfig) || has(self.agent)",
                "message": "spec.agentConfig applies only to agent interactions (spec.agent)",
            },
        ),
    ),
    Resource(
        kind="Agent",
        plural="agents",
        spec=AgentSpec,
        status=AgentStatus,
        printer_columns=(
            {"name": "Model", "type": "string", "jsonPath": ".spec.agentConfig.model"},
            {"name": "Description", "type": "string", "jsonPath": ".spec.description"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ),
    ),
    Resource(
        kind="Model",
        plural="models",
        spec=ModelSpec,
        status=ModelStatus,
        spec_rules=(
            {
                "rule": "self.provider != 'openai-compatible' || has(self.endpoint)",
                "message": "spec.endpoint is required for provider openai-compatible",
            },
            {
                "rule": "self.provider != 'scripted' || has(self.responses)",
                "message": "spec.responses is required for provider scripted",
            },
        ),
        printer_columns=(
            {"name": "Provider", "type": "string", "jsonPath": ".spec.provider"},
            {"name": "Upstream", "type": "string", "jsonPath": ".spec.upstreamModel"},
            {"name": "Endpoint", "type": "string", "jsonPath": ".spec.endpoint"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ),
    ),
    Resource(
        kind="Environment",
        plural="environments",
        spec=EnvironmentSpec,
        status=EnvironmentStatus,
        spec_required=False,
        printer_columns=(
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Files", "type": "integer", "jsonPath": ".status.fileCount"},
            {"name": "Bytes", "type": "integer", "jsonPath": ".status.sizeBytes"},
            {"name": "Last-Accessed", "type": "date", "jsonPath": ".status.lastAccessed"},
            {"name": "Run", "type": "string", "jsonPath": ".status.activeInteraction"},
        ),
    ),
    Resource(
        kind="Webhook",
        plural="webhooks",
        spec=WebhookSpec,
        status=WebhookStatus,
        printer_columns=(
            {"name": "URI", "type": "string", "jsonPath": ".spec.uri"},
            {"name": "Enabled", "type": "string", "jsonPath": ".spec.state"},
            {"name": "Disabled-By-Failures", "type": "string", "jsonPath": ".status.state"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ),
    ),
    Resource(
        kind="Trigger",
        plural="triggers",
        spec=TriggerSpec,
        status=TriggerStatus,
        printer_columns=(
            {"name": "Schedule", "type": "string", "jsonPath": ".spec.schedule"},
            {"name": "Zone", "type": "string", "jsonPath": ".spec.timeZone"},
            {"name": "Status", "type": "string", "jsonPath": ".spec.status"},
            {"name": "Errored", "type": "date", "jsonPath": ".status.errored"},
            {"name": "Last-Run", "type": "date", "jsonPath": ".status.lastRunTime"},
        ),
    ),
)


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema (camelCase) rewritten as a Kubernetes structural schema."""
    schema = model.model_json_schema(by_alias=True, mode="validation")
    defs = schema.get("$defs", {})
    return _convert(schema, defs)


def _convert(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]])
        target.update({k: v for k, v in node.items() if k != "$ref"})
        return _convert(target, defs)
    if node.get(_PRESERVE):
        # Any JSON value: no type, so strings, lists and objects all survive pruning.
        out = {_PRESERVE: True}
        if "description" in node:
            out["description"] = node["description"]
        return out
    for union in ("anyOf", "oneOf"):
        if union in node:
            return _convert_union(node, node[union], defs)

    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS or key in ("anyOf", "oneOf"):
            continue
        if key == "const":
            out["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            # JSON Schema 2020's number is OpenAPI v3.0's bound plus a flag
            out[key.replace("exclusiveM", "m")] = value
            out[key] = True
        elif key == "properties":
            out["properties"] = {name: _convert(sub, defs) for name, sub in value.items()}
        elif key == "items":
            out["items"] = _convert(value, defs)
        elif key == "additionalProperties":
            if value is True:
                out[_PRESERVE] = True
            elif isinstance(value, dict):
                out["additionalProperties"] = _convert(value, defs)
            # False: pruning already drops unknown fields.
        else:
            out[key] = value
    if "const" in node and "type" not in out:
        out["type"] = "string"
    if not out.get("type") and not out.get(_PRESERVE):
        # `Any`: pydantic emits {}; Kubernetes needs an explicit "anything goes".
        out = {_PRESERVE: True, **{k: out[k] for k in ("description",) if k in out}}
    return _tidy(out)


def _tidy(node: dict[str, Any]) -> dict[str, Any]:
    """Type and description first, descriptions on one line: easier to read in crds/."""
    if "description" in node:
        node["description"] = " ".join(node["description"].split())
    first = [k for k in ("type", "description") if k in node]
    return {**{k: node[k] for k in first}, **{k: v for k, v in node.items() if k not in first}}


def _convert_union(node: dict[str, Any], branches: list[dict], defs: dict) -> dict[str, Any]:
    options = [_convert(b, defs) for b in branches if b.get("type") != "null"]
    meta = {k: node[k] for k in ("description",) if k in node}
    if len(options) == 1:
        return _tidy({**options[0], **meta})
    if all(o.get("type") == "string" and "enum" in o for o in options):
        return _tidy({"type": "string", "enum": [v for o in options for v in o["enum"]], **meta})
    # Mixed shapes (a string or an object, an object or a list): keep the value as sent;
    # the pydantic model validates it on the way in.
    return _tidy({_PRESERVE: True, **meta})


def build_crd(resource: Resource) -> dict[str, Any]:
    """The CustomResourceDefinition for one resource."""
    spec = structural_schema(resource.spec)
    if resource.spec_rules:
        spec["x-kubernetes-validations"] = [dict(rule) for rule in resource.spec_rules]
    status = structural_schema(resource.status)
    root: dict[str, Any] = {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }
    if resource.spec_required:
        root["required"] = ["spec"]
    singular = resource.kind.lower()
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{resource.plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": resource.kind,
                "listKind": f"{resource.kind}List",
                "plural": resource.plural,
                "singular": singular,
                "shortNames": list(resource.short_names),
                "categories": list(resource.categories),
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": list(resource.printer_columns),
                    **(
                        {"selectableFields": [{"jsonPath": p} for p in resource.selectable_fields]}
                        if resource.selectable_fields
                        else {}
                    ),
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


def render() -> dict[str, str]:
    """File name → YAML text for every CRD."""
    header = "# Generated by `python -m tether.crds` from tether/api. Do not edit.\n"
    return {
        f"{r.plural}.{GROUP}.yaml": header
        + yaml.safe_dump(build_crd(r), sort_keys=False, width=100)
        for r in RESOURCES
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if a copy differs")
    parser.add_argument("--out", type=Path, action="append", help="default: crds/ and the chart's")
    args = parser.parse_args(argv)
    rendered = render()
    failed = False
    for out in args.out or [CRD_DIR, CHART_CRD_DIR]:
        if args.check:
            stale = sorted(
                name
                for name, text in rendered.items()
                if not (out / name).exists() or (out / name).read_text() != text
            )
            extra = sorted(p.name for p in out.glob("*.yaml") if p.name not in rendered)
            if stale or extra:
                print(f"CRDs in {out} drifted from tether/api: {', '.join(stale + extra)}")
                print("run `make crds` and commit the result")
                failed = True
            else:
                print(f"CRDs in {out} match tether/api")
            continue
        out.mkdir(parents=True, exist_ok=True)
        for name, text in rendered.items():
            (out / name).write_text(text)
        print(f"wrote {len(rendered)} CRDs to {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
