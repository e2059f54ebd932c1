"""Tether: the Interactions API on your own Kubernetes cluster."""
