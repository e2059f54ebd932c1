"""The dev node's work: register a Node, keep it Ready, run the pods bound to it as processes,
report their status through the real API, and serve their logs to the API server."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import logging
import os
import shutil
import signal
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from tether.dev import pki
from tether.dev.node.bwrap import Mount, bwrap_argv
from tether.outages import through_outages

log = logging.getLogger("tether.dev.node")
LEASE_SECONDS = 40
HEARTBEAT_SECONDS = 10
TERMINATION_MESSAGE_BYTES = 4096


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Container:
    """One running (or finished) container process of a pod."""

    name: str
    image: str
    log: Path
    sidecar: bool = False
    process: asyncio.subprocess.Process | None = None
    started_at: str | None = None
    finished_at: str | None = None
    exit_code: int | None = None
    message: str | None = None

    def status(self) -> dict[str, Any]:
        if self.exit_code is not None:
            terminated = {
                "exitCode": self.exit_code,
                "reason": "Completed" if self.exit_code == 0 else "Error",
                "startedAt": self.started_at,
                "finishedAt": self.finished_at,
                "containerID": f"devnode://{self.name}",
            }
            if self.message:
                terminated["message"] = self.message
            state = {"terminated": terminated}
        elif self.process is not None:
            state = {"running": {"startedAt": self.started_at}}
        else:
            state = {"waiting": {"reason": "ContainerCreating"}}
        return {
            "name": self.name,
            "image": self.image,
            "imageID": f"devnode://{self.image}",
            "containerID": f"devnode://{self.name}",
            "ready": self.process is not None and self.exit_code is None,
            "restartCount": 0,
            "started": self.process is not None,
            "state": state,
        }


@dataclass
class PodRun:
    namespace: str
    name: str
    uid: str
    directory: Path
    sidecars: list[Container] = field(default_factory=list)
    containers: list[Container] = field(default_factory=list)
    task: asyncio.Task | None = None
    task_deletion: asyncio.Task | None = None
    deleting: bool = False


class DevNode:
    def __init__(
        self,
        api: client.ApiClient,
        name: str,
        workdir: Path,
        host_dirs: list[str],
        path: str,
        logs_port: int,
    ) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.coordination = client.CoordinationV1Api(api)
        self.name = name
        self.workdir = workdir
        self.host_dirs = host_dirs
        self.path = path
        self.logs_port = logs_port
        self.pods: dict[str, PodRun] = {}

    # -- the node ---------------------------------------------------------------------------------

    async def run(self) -> None:
        log.warning("DEV NODE %s: dev only, no isolation; never run untrusted code here", self.name)
        runner = await self._serve_logs()
        await self._register()
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            await self._watch_pods()
        finally:
            heartbeat.cancel()
            for pod in list(self.pods.values()):
                await self._kill(pod, grace=2)
            await runner.cleanup()

    async def _register(self) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": {
                    "kubernetes.io/hostname": self.name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "tether.dev/dev-node": "true",
                },
            },
        }
        with contextlib.suppress(ApiException):
            await self.core.create_node(body)
        await self._report_node()

    async def _report_node(self) -> None:
        stamp = now()
        await self.core.patch_node_status(
            self.name,
            {
                "status": {
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "reason": "DevNodeReady",
                            "message": "dev node: processes under bubblewrap, no isolation",
                            "lastHeartbeatTime": stamp,
                            "lastTransitionTime": stamp,
                        }
                    ],
                    "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                    "capacity": {"cpu": str(os.cpu_count()), "memory": "8Gi", "pods": "110"},
                    "allocatable": {"cpu": str(os.cpu_count()), "memory": "8Gi", "pods": "110"},
                    "daemonEndpoints": {"kubeletEndpoint": {"Port": self.logs_port}},
                    "nodeInfo": {
                        "machineID": self.name,
                        "systemUUID": self.name,
                        "bootID": str(os.getpid()),
                        "kernelVersion": os.uname().release,
                        "osImage": "tether dev node",
                        "containerRuntimeVersion": "devnode://bubblewrap",
                        "kubeletVersion": "v1.34.4",
                        "kubeProxyVersion": "",
                        "operatingSystem": "linux",
                        "architecture": "amd64",
                    },
                }
            },
        )

    async def _heartbeat(self) -> None:
        while True:
            try:
                lease = {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": "kube-node-lease"},
                    "spec": {
                        "holderIdentity": self.name,
                        "leaseDurationSeconds": LEASE_SECONDS,
                        "renewTime": micro_now(),
                    },
                }
                try:
                    await self.coordination.patch_namespaced_lease(
                        self.name, "kube-node-lease", {"spec": lease["spec"]}
                    )
                except ApiException as error:
                    if error.status != 404:
                        raise
                    await self.coordination.create_namespaced_lease("kube-node-lease", lease)
                await self._report_node()
            except Exception:  # a missed beat is retried at the next one
                log.exception("heartbeat failed")
            await asyncio.sleep(HEARTBEAT_SECONDS)

    # -- pods -------------------------------------------------------------------------------------

    async def _watch_pods(self) -> None:
        selector = f"spec.nodeName={self.name}"
        version = None
        while True:
            try:
                if version is None:
                    listed = await self.core.list_pod_for_all_namespaces(field_selector=selector)
                    for pod in listed.items:
                        await self._on_pod("ADDED", pod)
                    version = listed.metadata.resource_version
                async with watch.Watch() as stream:
                    async for event in stream.stream(
                        self.core.list_pod_for_all_namespaces,
                        field_selector=selector,
                        resource_version=version,
                        timeout_seconds=300,
                    ):
                        version = event["object"].metadata.resource_version
                        await self._on_pod(event["type"], event["object"])
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("pod watch interrupted; listing again", exc_info=True)
                version = None
                await asyncio.sleep(1)

    async def _on_pod(self, kind: str, pod: client.V1Pod) -> None:
        uid = pod.metadata.uid
        log.debug(
            "%s pod %s/%s phase=%s",
            kind,
            pod.metadata.namespace,
            pod.metadata.name,
            pod.status.phase,
        )
        run = self.pods.get(uid)
        if kind == "DELETED":
            if run:
                await self._kill(run, grace=0)
                self._forget(run)
            return
        if pod.metadata.deletion_timestamp is not None:
            if run and not run.deleting:
                run.deleting = True
                grace = pod.metadata.deletion_grace_period_seconds or 0
                run.task_deletion = asyncio.create_task(self._finish_deletion(run, grace))
            elif run is None:
                await self._delete_object(pod.metadata.namespace, pod.metadata.name, uid)
            return
        if run is None and (pod.status.phase or "Pending") == "Pending":
            run = PodRun(
                pod.metadata.namespace,
                pod.metadata.name,
                uid,
                self.workdir / "pods" / uid,
            )
            self.pods[uid] = run
            run.task = asyncio.create_task(self._run_pod(run, pod))
        elif run is None and pod.status.phase == "Running":
            # Its processes died with an earlier dev node: say so instead of pretending.
            await self._patch_status(
                pod.metadata.namespace,
                pod.metadata.name,
                {"phase": "Failed", "reason": "NodeRestarted", "message": "the dev node restarted"},
            )

    async def _run_pod(self, run: PodRun, pod: client.V1Pod) -> None:
        spec = pod.spec
        try:
            mounts = await self._volumes(run, pod)
            uid = (spec.security_context.run_as_user if spec.security_context else None) or None
            run.sidecars = [
                self._container(run, c, sidecar=True)
                for c in spec.init_containers or []
                if c.restart_policy == "Always"
            ]
            run.containers = [self._container(run, c) for c in spec.containers]
            started = now()
            await self._patch_status(
                run.namespace,
                run.name,
                {
                    "phase": "Pending",
                    "startTime": started,
                    "hostIP": "127.0.0.1",
                    "podIP": "127.0.0.1",
                    "podIPs": [{"ip": "127.0.0.1"}],
                },
            )
            sources = {c.name: c for c in [*(spec.init_containers or []), *spec.containers]}
            for container in [*run.sidecars, *run.containers]:
                await self._start(run, container, sources[container.name], mounts, uid)
            await self._report(run, "Running")
            deadline = spec.active_deadline_seconds
            waits = [self._wait(run, c) for c in run.containers]
            try:
                async with asyncio.timeout(deadline):
                    await asyncio.gather(*waits)
            except TimeoutError:
                await self._kill(run, grace=2)
                await self._report(
                    run,
                    "Failed",
                    reason="DeadlineExceeded",
                    message=f"Pod was active on the node longer than the specified deadline "
                    f"({deadline}s)",
                )
                return
            for sidecar in run.sidecars:
                await self._stop(sidecar, grace=2)
            failed = any(c.exit_code != 0 for c in run.containers)
            await self._report(run, "Failed" if failed else "Succeeded")
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.exception("pod %s/%s could not run", run.namespace, run.name)
            await self._kill(run, grace=0)
            await self._patch_status(
                run.namespace,
                run.name,
                {"phase": "Failed", "reason": "DevNodeError", "message": str(error)[:1000]},
            )

    def _container(self, run: PodRun, source: client.V1Container, sidecar: bool = False):
        return Container(
            name=source.name,
            image=source.image,
            log=run.directory / "logs" / f"{source.name}.log",
            sidecar=sidecar,
        )

    async def _volumes(self, run: PodRun, pod: client.V1Pod) -> dict[str, Path]:
        """Host directories for the pod's emptyDir and Secret volumes."""
        found: dict[str, Path] = {}
        for volume in pod.spec.volumes or []:
            path = run.directory / "volumes" / volume.name
            path.mkdir(parents=True, exist_ok=True)
            if volume.secret is not None:
                secret = await self._secret(volume.secret.secret_name, run.namespace)
                mode = volume.secret.default_mode or 0o644
                for key, value in (secret.data or {}).items():
                    target = path / key
                    target.write_bytes(base64.b64decode(value))
                    target.chmod(mode)
            elif volume.empty_dir is None:
                raise ValueError(
                    f"volume {volume.name!r}: the dev node supports emptyDir and secret"
                )
            found[volume.name] = path
        return found

    async def _env(self, run: PodRun, source: client.V1Container) -> dict[str, str]:
        env = {"PATH": self.path, "HOSTNAME": run.name}
        for item in source.env or []:
            if item.value_from is not None:
                ref = item.value_from.secret_key_ref
                if ref is None:
                    raise ValueError(f"env {item.name!r}: the dev node supports secretKeyRef only")
                secret = await self._secret(ref.name, run.namespace)
                env[item.name] = base64.b64decode((secret.data or {})[ref.key]).decode()
            else:
                env[item.name] = item.value or ""
        return env

    async def _start(self, run, container: Container, source, volumes, uid) -> None:
        mounts = []
        for mount in source.volume_mounts or []:
            host = volumes[mount.name] / (mount.sub_path or "")
            host.mkdir(parents=True, exist_ok=True)
            mounts.append(Mount(host, mount.mount_path, bool(mount.read_only)))
        argv = bwrap_argv(
            command=[*(source.command or []), *(source.args or [])],
            mounts=mounts,
            env=await self._env(run, source),
            working_dir=source.working_dir,
            uid=(source.security_context.run_as_user if source.security_context else None) or uid,
            host_dirs=self.host_dirs,
        )
        container.log.parent.mkdir(parents=True, exist_ok=True)
        with container.log.open("ab") as out:
            container.process = await asyncio.create_subprocess_exec(
                *argv,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL,
            )
        container.started_at = now()

    async def _wait(self, run: PodRun, container: Container) -> None:
        code = await container.process.wait()
        container.exit_code = code if code >= 0 else 128 - code
        container.finished_at = now()
        if container.exit_code != 0:  # terminationMessagePolicy: FallbackToLogsOnError
            with contextlib.suppress(OSError):
                data = container.log.read_bytes()[-TERMINATION_MESSAGE_BYTES:]
                container.message = data.decode(errors="replace")
        if not run.deleting:
            await self._report(run, "Running")

    async def _stop(self, container: Container, grace: float) -> None:
        process = container.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        if container.exit_code is None:
            code = process.returncode
            container.exit_code = code if code >= 0 else 128 - code
            container.finished_at = now()

    async def _kill(self, run: PodRun, grace: float) -> None:
        if run.task and run.task is not asyncio.current_task():
            run.task.cancel()
        await asyncio.gather(*(self._stop(c, grace) for c in [*run.containers, *run.sidecars]))

    async def _finish_deletion(self, run: PodRun, grace: float) -> None:
        try:
            await self._kill(run, grace)
            await self._delete_object(run.namespace, run.name, run.uid)
        except Exception:
            log.exception("could not finish deleting %s/%s", run.namespace, run.name)
        finally:
            self._forget(run)

    async def _delete_object(self, namespace: str, name: str, uid: str) -> None:
        with contextlib.suppress(ApiException):  # already gone
            await self.core.delete_namespaced_pod(
                name,
                namespace,
                body=client.V1DeleteOptions(
                    grace_period_seconds=0, preconditions=client.V1Preconditions(uid=uid)
                ),
            )

    def _forget(self, run: PodRun) -> None:
        self.pods.pop(run.uid, None)
        shutil.rmtree(run.directory, ignore_errors=True)

    async def _report(self, run: PodRun, phase: str, **extra: str) -> None:
        ready = phase == "Running" and all(c.exit_code is None for c in run.containers)
        stamp = now()
        await self._patch_status(
            run.namespace,
            run.name,
            {
                "phase": phase,
                "conditions": [
                    {"type": t, "status": "True" if ok else "False", "lastTransitionTime": stamp}
                    for t, ok in (
                        ("PodScheduled", True),
                        ("Initialized", True),
                        ("ContainersReady", ready),
                        ("Ready", ready),
                    )
                ],
                "initContainerStatuses": [c.status() for c in run.sidecars],
                "containerStatuses": [c.status() for c in run.containers],
                **extra,
            },
        )

    async def _patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Report, retrying while the API server is away, as the kubelet's status manager does."""
        try:
            await through_outages(
                lambda: self.core.patch_namespaced_pod_status(name, namespace, {"status": status}),
                f"status of pod {namespace}/{name}",
            )
        except ApiException as error:
            if error.status != 404:  # deleted meanwhile: nothing to report to
                raise

    async def _secret(self, name: str, namespace: str) -> client.V1Secret:
        return await through_outages(
            lambda: self.core.read_namespaced_secret(name, namespace), f"Secret {namespace}/{name}"
        )

    # -- logs, as the kubelet serves them to the API server --------------------------------------

    async def _serve_logs(self) -> web.AppRunner:
        app = web.Application()
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self._container_logs)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        certs = self.workdir / "serving"
        certs.mkdir(parents=True, exist_ok=True)
        generated = pki.generate()
        (certs / "tls.crt").write_bytes(generated.serving.cert)
        (certs / "tls.key").write_bytes(generated.serving.key)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certs / "tls.crt", certs / "tls.key")
        await web.TCPSite(runner, "127.0.0.1", self.logs_port, ssl_context=context).start()
        return runner

    async def _container_logs(self, request: web.Request) -> web.StreamResponse:
        namespace, name = request.match_info["namespace"], request.match_info["pod"]
        run = next(
            (p for p in self.pods.values() if (p.namespace, p.name) == (namespace, name)), None
        )
        container = run and next(
            (
                c
                for c in [*run.containers, *run.sidecars]
                if c.name == request.match_info["container"]
            ),
            None,
        )
        if container is None or not container.log.exists():
            raise web.HTTPNotFound(text=f"no logs for {namespace}/{name}")
        lines = container.log.read_bytes().splitlines(keepends=True)
        if tail := request.query.get("tailLines"):
            lines = lines[-int(tail) :]
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        await response.write(b"".join(lines))
        if request.query.get("follow") == "true":
            offset = container.log.stat().st_size
            while container.exit_code is None:
                await asyncio.sleep(0.2)
                with container.log.open("rb") as f:
                    f.seek(offset)
                    chunk = f.read()
                offset += len(chunk)
                if chunk:
                    await response.write(chunk)
        await response.write_eof()
        return response
