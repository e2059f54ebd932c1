"""`make up`'s pure parts: the chart's values for this machine, loopback URLs as pods see them,
and the node's add-ons."""

from __future__ import annotations

from pathlib import Path

from tether.dev.up import from_pods, release_values
from tether.dev.worker import dns, storage


def test_a_loopback_url_becomes_the_host_alias_and_others_stay():
    assert from_pods("http://127.0.0.1:11434/v1") == "http://host.tether.internal:11434/v1"
    assert from_pods("http://localhost/v1?x=1") == "http://host.tether.internal/v1?x=1"
    assert from_pods("https://api.openai.com/v1") == "https://api.openai.com/v1"


def test_the_release_runs_local_images_under_gvisor_on_the_chosen_port():
    values = release_values(18080, "qwen")
    assert values["image"] == {"registry": "tether.local", "tag": "dev", "pullPolicy": "Never"}
    assert values["gateway"]["service"] == {"type": "NodePort", "nodePort": 18080}
    assert values["sandbox"]["runtimeClassName"] == "gvisor"
    # the alias is a private address that the egress proxy lets allowlists name
    assert values["egress"]["namedHosts"] == {"host.tether.internal": ""}
    assert values["defaults"]["agentModel"] == "qwen"


def test_cluster_dns_knows_the_host_alias_and_forwards_nothing():
    corefile = dns.corefile("10.244.255.254")
    assert "10.244.255.254 host.tether.internal" in corefile
    assert "forward" not in corefile


def test_storage_is_the_default_class_in_the_nodes_folder():
    objects = {o["kind"]: o for o in storage.manifests(Path("/data/volumes"))}
    assert objects["StorageClass"]["metadata"]["annotations"] == {
        "storageclass.kubernetes.io/is-default-class": "true"
    }
    assert '"/data/volumes"' in objects["ConfigMap"]["data"]["config.json"]
    deployment = objects["Deployment"]["spec"]["template"]["spec"]
    # the helper pods run under the account the provisioner names, which must exist
    assert deployment["serviceAccountName"] == objects["ServiceAccount"]["metadata"]["name"]
