"""The `ztcp` entry point itself: what holds for every command."""

from __future__ import annotations


def test_every_file_ztcp_writes_is_private_to_its_user(tmp_path) -> None:
    import os
    import stat
    import subprocess
    import sys

    home = tmp_path / "home"
    env = {**os.environ, "ZTCP_HOME": str(home)}
    old = os.umask(0o022)  # a typical login umask: without ztcp's own, the stores would be 0644
    try:
        done = subprocess.run([sys.executable, "-m", "cli.main", "audit", "verify"], env=env,
                              capture_output=True, text=True, timeout=120)
    finally:
        os.umask(old)
    assert done.returncode == 0, done.stderr
    files = [p for p in home.iterdir() if p.is_file()]
    assert any(p.name.startswith("provenance.db") for p in files)
    loose = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files if p.stat().st_mode & 0o077}
    assert loose == {}
