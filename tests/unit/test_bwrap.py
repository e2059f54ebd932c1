"""The dev node's bubblewrap command line."""

from pathlib import Path

from tether.devnode.bwrap import Mount, bwrap_argv


def test_host_folders_under_tmp_are_bound_after_the_fresh_tmp():
    argv = bwrap_argv(["python"], [], {}, None, None, ["/tmp"])
    assert argv.index("--tmpfs") < argv.index("--ro-bind", argv.index("--tmpfs"))
    assert argv[argv.index("--tmpfs") + 1] == "/tmp"


def test_volumes_land_at_their_mount_paths_and_env_is_exactly_the_pods():
    argv = bwrap_argv(
        ["python", "-m", "x"],
        [Mount(Path("/var/vol/ws"), "/workspace"), Mount(Path("/var/vol/tok"), "/run/t", True)],
        {"A": "1"},
        "/workspace",
        1000,
        [],
    )
    joined = " ".join(argv)
    assert "--bind /var/vol/ws /workspace" in joined
    assert "--ro-bind /var/vol/tok /run/t" in joined
    assert "--clearenv --setenv A 1" in joined
    assert "--uid 1000" in joined
    assert argv[-4:] == ["--", "python", "-m", "x"]
