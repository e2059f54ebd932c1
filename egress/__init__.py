"""The egress proxy: sandboxes reach the outside only through it (see __main__)."""
