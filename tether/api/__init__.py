"""Wire objects: one pydantic model per object, snake_case on HTTP, camelCase in resources."""

GROUP = "tether.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
