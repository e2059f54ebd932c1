"""The layout holds: the services never load the development wing, which the images leave out."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SERVICES = [
    "tether.operator.handlers",
    "tether.gateway.app",
    "tether.sandbox.agent",
    "tether.sandbox.workspace",
]


def test_the_services_never_load_the_dev_wing():
    """Import every service's entry module in a clean interpreter and list what got loaded."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {SERVICES!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('tether'))))"
    )
    loaded = json.loads(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/"
        ).stdout
    )
    assert "tether.operator.handlers" in loaded  # the check itself looked
    assert [m for m in loaded if m == "tether.dev" or m.startswith("tether.dev.")] == []


def test_no_service_source_names_the_dev_wing():
    sources = [
        *ROOT.glob("operator/*.py"),
        *ROOT.glob("gateway/*.py"),
        *ROOT.glob("sandbox/*.py"),
        *ROOT.glob("egress/*.py"),
        *(p for p in ROOT.glob("tether/**/*.py") if "dev" not in p.relative_to(ROOT).parts),
    ]
    assert len(sources) > 20
    imports_dev = re.compile(
        r"^\s*(from|import)\s+tether\.dev\b|^\s*from\s+tether\s+import\s+dev\b", re.M
    )
    offenders = [str(p.relative_to(ROOT)) for p in sources if imports_dev.search(p.read_text())]
    assert offenders == []


def test_the_images_leave_the_dev_wing_out():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "rm -rf /install/lib/python3.11/site-packages/tether/dev" in dockerfile


def test_the_sandbox_imports_only_its_contract_its_mcp_client_and_its_libraries():
    """It runs in its own image: of the platform's code it knows only the typed contract, the
    MCP client (which imports nothing else of the platform's), and its own modules."""
    for path in ROOT.glob("sandbox/*.py"):
        for line in path.read_text().splitlines():
            if line.startswith(("import ", "from ")) and "__future__" not in line:
                module = line.split()[1]
                own = module.startswith((".", "tether.sandbox."))
                allowed = (
                    own
                    or module.split(".")[0] in sys.stdlib_module_names
                    or module
                    in (
                        "aiohttp",
                        "httpx2",
                        "playwright.async_api",
                        "tether.api.internal",
                        "tether.mcp_tools",
                    )
                )
                assert allowed, (path, line)


def test_the_mcp_client_imports_nothing_of_the_platforms_but_the_sandbox_contract():
    """The sandbox imports it too."""
    for line in (ROOT / "tether" / "mcp_tools.py").read_text().splitlines():
        if line.startswith(("import ", "from ")) and "__future__" not in line:
            module = line.split()[1]
            top = module.split(".")[0]
            assert (
                top in sys.stdlib_module_names
                or top in ("mcp", "httpx2")
                or (module == "tether.api.internal")
            ), line


def test_the_egress_proxy_imports_only_what_its_own_environment_holds():
    """It runs from .venv-egress (mitmproxy's pins): of the platform's code it imports only
    modules whose dependencies egress/requirements.txt installs there too."""
    platform = ("tether.api.", "tether.settings", "tether.kube", "tether.egress")
    libraries = {"mitmproxy", "aiohttp", "kubernetes_asyncio", "prometheus_client", "pydantic"}
    libraries |= {"cryptography", "OpenSSL"}  # mitmproxy's own
    for path in ROOT.glob("egress/*.py"):
        for line in path.read_text().splitlines():
            if line.startswith(("import ", "from ")) and "__future__" not in line:
                module = line.split()[1]
                allowed = (
                    module.startswith((".", *platform))
                    or module.split(".")[0] in sys.stdlib_module_names | libraries
                )
                assert allowed, (path, line)


def test_the_egress_proxy_starts_in_its_own_environment():
    python = ROOT / ".venv-egress" / "bin" / "python"
    code = "import tether.egress.__main__, tether.egress.gate, mitmproxy; print('ok')"
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd="/")
    assert done.stdout.strip() == "ok", done.stderr


@pytest.mark.parametrize("service", ["tether.gateway.__main__", "tether.operator.__main__"])
def test_the_services_start_without_the_sandbox_images_own_libraries(service):
    """Their images install the project's dependencies only: the sandbox extra (Playwright)
    is the sandbox image's."""
    code = f"import sys; sys.modules['playwright'] = None; import {service}; print('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert done.stdout.strip() == "ok", done.stderr[-2000:]


def test_the_repository_root_shadows_nothing_of_the_standard_library():
    """`python -m`/`-c` from the root puts it first on sys.path; `operator/` must not win there.

    `-S` skips site-packages, whose start-up imports would load the real module first and hide
    the problem; a clean installed interpreter (no editable install) has no such luck."""
    found = subprocess.run(
        [sys.executable, "-S", "-c", "import operator; print(operator.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
    ).stdout.strip()
    assert Path(found).parent != ROOT / "operator"
    assert Path(found).name == "operator.py"


def test_the_folders_are_their_import_paths():
    """tether/<folder> is the top-level folder itself, so a file has one path and one name."""
    for folder in ("operator", "gateway", "sandbox"):
        assert (ROOT / "tether" / folder).resolve() == ROOT / folder
        module = importlib.import_module(
            f"tether.{folder}.__main__" if folder != "sandbox" else "tether.sandbox.agent"
        )
        assert Path(module.__file__).resolve().parent == ROOT / folder
