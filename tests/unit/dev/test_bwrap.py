"""The dev node's bubblewrap command line."""

from pathlib import Path

from tether.dev.node.bwrap import Mount, bwrap_argv


def test_the_image_stand_in_is_bound_after_tmp_and_the_pods_volumes():
    """A checkout under /tmp must stay visible when the pod mounts its own /tmp."""
    argv = bwrap_argv(["python"], [Mount(Path("/var/vol/tmp"), "/tmp")], {}, None, None, ["/tmp"])
    tmpfs = argv.index("--tmpfs")
    volume = argv.index("/var/vol/tmp")
    stand_in = len(argv) - 1 - argv[::-1].index("/tmp")  # the last "/tmp": the host folder bind
    assert tmpfs < volume < stand_in


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
