"""The dev node: a process-based stand-in for the kubelet, for `make up` and the tests.

DEV ONLY, NO ISOLATION. It runs each container of the pods bound to it as local processes
under bubblewrap (its own mount and PID namespaces, the pod's volumes at their mount paths),
sharing the host network. It isolates nothing that a container runtime would. Never run
untrusted code on a dev node you care about; real clusters use a real kubelet.
"""
