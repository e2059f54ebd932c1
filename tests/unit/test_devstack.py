"""What `make up` installs: the offline models, and a real vendor when OPENAI_BASE_URL is set."""

from tether.devstack import default_models


def test_the_offline_models_are_always_installed():
    assert [m["metadata"]["name"] for m in default_models({})] == ["echo", "scripted"]


def test_openai_base_url_adds_an_openai_compatible_model():
    models = default_models(
        {"OPENAI_BASE_URL": "http://127.0.0.1:8000/v1", "OPENAI_MODEL": "Qwen/Qwen2.5-7B"}
    )
    routed = models[-1]
    assert routed["metadata"]["name"] == "qwen-qwen2.5-7b"
    assert routed["spec"] == {
        "provider": "openai-compatible",
        "endpoint": "http://127.0.0.1:8000/v1",
        "upstreamModel": "Qwen/Qwen2.5-7B",
        "aliases": ["Qwen/Qwen2.5-7B"],
    }


def test_an_openai_key_is_referenced_from_a_secret_never_inlined():
    models = default_models(
        {"OPENAI_BASE_URL": "https://api.openai.com/v1", "OPENAI_API_KEY": "sk"}
    )
    spec = models[-1]["spec"]
    assert models[-1]["metadata"]["name"] == "openai"
    assert spec["credentials"] == {"secretRef": {"name": "openai-credentials", "key": "api-key"}}
    assert "sk" not in str(spec)
