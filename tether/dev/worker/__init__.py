"""A real Kubernetes worker node for the local stack, on this host, as root, without Docker.

cluster.py LocalCluster: the node's bridge, a control plane listening on it, the node; put back
parts.py   where `make node-parts` put the binaries
configs.py pure builders: containerd, CNI, kubelet, kube-proxy, kube-router
dns.py     CoreDNS as pods behind the kube-dns Service (pure builders)
host.py    what the node changes on the host, observed first and put back after
images.py  images without a registry: buildah, then containerd's import
node.py    WorkerNode: containerd, kubelet, kube-scheduler, kube-proxy, kube-router, DNS
"""
