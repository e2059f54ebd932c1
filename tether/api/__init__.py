"""Wire objects: one pydantic model per object, snake_case on HTTP, camelCase in resources."""
