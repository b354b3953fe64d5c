"""The shell examples of the READMEs, run as written: examples that cannot rot.

Every fenced block tagged ``sh`` or ``bash`` in ``README.md`` and in each package's README
(``*/README.md``, ``*/*/README.md``) is one test. It runs under ``bash -euo pipefail`` — a block
fails on its first failing command, and the failure shows the block, its output and file:line —
with:

* a fresh ``ZTCP_HOME`` (mode 0700) and ``ZTCP_CONFIG`` pointing at nothing, no other ``ZTCP_*``
  from the machine;
* the working directory a scratch directory in which every top-level entry of the repository is
  a symlink (``examples/decision-request.json`` resolves; files a block writes stay there);
* ``PATH`` with the venv's ``bin`` first and ``PYTHONPATH`` the repository, so ``ztcp`` and
  ``python3`` are this checkout's;
* ``ZTCP_ENGINE_TIMEOUT_MS=2000``, as everywhere in this suite: a loaded CI machine must not turn
  an example into an ``engine_timeout`` deny.

A block is marked by an HTML comment on the line right before its opening fence (invisible on
GitHub); markers combine with commas, e.g. ``<!-- example: needs-demo, needs-server -->``:

``<!-- example: skip (why) -->``
    not run. Only for blocks that need a remote service (Vault, PostgreSQL, Elasticsearch, OPA,
    an IdP) or run ``make`` itself (a server in the foreground, the whole suite); the reason is
    required and shown in the skip.
``<!-- example: needs-server -->``
    run while ``ztcp serve`` serves the block's home on a free port; ``localhost:8080`` and
    ``127.0.0.1:8080`` in the block are rewritten to that port.
``<!-- example: needs-demo -->``
    run in a copy of a home seeded by ``ztcp demo seed --citizens 50 --days 2`` (seeded once, in
    the background while the other blocks run). The READMEs' demo is the default 2,000-citizen
    week; the commands after it are the same on the small one.

Unmarked blocks run on a fresh home. An unknown marker fails, so a typo cannot skip a block.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(os.environ.get("VIRTUAL_ENV") or ROOT / ".venv") / "bin"
if not (BIN / "ztcp").exists():  # the interpreter running the tests is the venv's
    import sys

    BIN = Path(sys.executable).parent
DEMO_ARGS = ("demo", "seed", "--citizens", "50", "--days", "2")
BLOCK_SECONDS = 180
MARKER = re.compile(r"^<!--\s*example:\s*(?P<body>.*?)\s*-->\s*$")
KNOWN = {"skip", "needs-server", "needs-demo"}


@dataclass(frozen=True)
class Block:
    path: str  # relative to the repository
    line: int  # of the opening fence
    code: str
    markers: frozenset[str]
    skip_reason: str | None

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}"


def readmes() -> list[Path]:
    found = [ROOT / "README.md"]
    for pattern in ("*/README.md", "*/*/README.md"):
        found += sorted(p for p in ROOT.glob(pattern)
                        if p.parts[len(ROOT.parts)] not in {".venv", "tests", "benchmarks", ".git"})
    return found


def _markers(comment: str, where: str) -> tuple[frozenset[str], str | None]:
    names, reason = set(), None
    for part in (p.strip() for p in re.split(r",(?![^(]*\))", comment)):
        m = re.fullmatch(r"skip\s*\((?P<why>[^)]+)\)", part)
        if m:
            names.add("skip")
            reason = m["why"].strip()
        elif part in KNOWN - {"skip"}:
            names.add(part)
        else:
            raise ValueError(f"{where}: unknown example marker {part!r} (known: skip (why), needs-server, "
                             "needs-demo)")
    return frozenset(names), reason


def blocks(path: Path, root: Path = ROOT) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    rel = str(path.relative_to(root))
    out = []
    i = 0
    while i < len(lines):
        fence = re.match(r"^(`{3,})(\w*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        ticks, lang = fence.groups()
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith(ticks)), len(lines))
        if lang in ("sh", "bash"):
            prev = lines[i - 1] if i else ""
            m = MARKER.match(prev)
            markers, reason = _markers(m["body"], f"{rel}:{i}") if m else (frozenset(), None)
            out.append(Block(rel, i + 1, "\n".join(lines[i + 1:end]) + "\n", markers, reason))
        i = end + 1
    return out


# Blocks on the demo's home last: the demo seeds in the background while the others run.
ALL = sorted((b for p in readmes() for b in blocks(p)), key=lambda b: "needs-demo" in b.markers)


# ---- the environment a block runs in -------------------------------------------------------------------

def _scratch(base: Path) -> tuple[Path, Path]:
    """A working directory showing the repository (symlinks) and a fresh ZTCP_HOME."""
    work = base / "work"
    work.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in {".git", ".ztcp", ".venv"} and not entry.name.startswith(".pytest"):
            (work / entry.name).symlink_to(entry)
    home = base / "home"
    home.mkdir(mode=0o700)
    return work, home


def _env(home: Path, work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZTCP_")}
    env.update(ZTCP_HOME=str(home), ZTCP_CONFIG=str(work / "no-ztcp.toml"), ZTCP_ENGINE_TIMEOUT_MS="2000",
               PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", PYTHONPATH=str(ROOT), COLUMNS="200",
               VIRTUAL_ENV=str(BIN.parent))
    return env


class _Demo:
    """``ztcp demo seed`` (small) started once, in the background, and waited for on first use."""

    def __init__(self, base: Path) -> None:
        self.work, self.home = _scratch(base)
        self.log = base / "demo.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen([str(BIN / "ztcp"), *DEMO_ARGS], cwd=self.work,
                                         env=_env(self.home, self.work), stdout=log, stderr=subprocess.STDOUT)

    def seeded_home(self) -> Path:
        rc = self.proc.wait(timeout=600)
        assert rc == 0, f"ztcp {' '.join(DEMO_ARGS)} exited {rc}:\n{self.log.read_text()[-3000:]}"
        return self.home

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    started = _Demo(tmp_path_factory.mktemp("readme-demo")) if any("needs-demo" in b.markers for b in ALL) else None
    yield started
    if started:
        started.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    def __init__(self, env: dict[str, str], work: Path, log: Path) -> None:
        self.port = _free_port()
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen([str(BIN / "ztcp"), "serve", "--port", str(self.port), "--log-level",
                                          "warning"], cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"ztcp serve exited:\n{log.read_text()[-3000:]}"
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"ztcp serve not ready in 90 s:\n{log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run_block(block: Block, base: Path, demo: _Demo | None) -> subprocess.CompletedProcess:
    work, home = _scratch(base)
    if "needs-demo" in block.markers:
        assert demo is not None
        shutil.rmtree(home)
        shutil.copytree(demo.seeded_home(), home)
    env = _env(home, work)
    code = block.code
    server = None
    if "needs-server" in block.markers:
        server = _Server(env, work, base / "serve.log")
        code = re.sub(r"\b(localhost|127\.0\.0\.1):8080\b", f"127.0.0.1:{server.port}", code)
    try:
        return subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=work, env=env, capture_output=True,
                              text=True, timeout=BLOCK_SECONDS, check=False)
    finally:
        if server:
            server.stop()


# ---- the tests -------------------------------------------------------------------------------------------

def test_there_are_examples_and_the_markers_parse() -> None:
    assert len(ALL) >= 5
    assert {b.path for b in ALL} > {"README.md"}  # package READMEs have runnable examples too
    for b in ALL:
        assert "skip" not in b.markers or b.skip_reason, f"{b.id}: a skipped example must say why"


def test_an_unknown_marker_is_an_error(tmp_path: Path) -> None:
    doc = tmp_path / "README.md"
    doc.write_text("<!-- example: skip (remote) -->\n```sh\nztcp --help\n```\n\n"
                   "<!-- example: needs-demo, needs-server -->\n```bash\nztcp audit verify\n```\n\n"
                   "```\nnot run: untagged\n```\n")
    (remote, both) = blocks(doc, tmp_path)
    assert remote.markers == {"skip"} and remote.skip_reason == "remote" and remote.line == 2
    assert both.markers == {"needs-demo", "needs-server"} and both.code == "ztcp audit verify\n"
    doc.write_text("<!-- example: need-server -->\n```sh\nztcp --help\n```\n")
    with pytest.raises(ValueError, match="unknown example marker 'need-server'"):
        blocks(doc, tmp_path)


@pytest.mark.parametrize("block", ALL, ids=[b.id for b in ALL])
def test_example(block: Block, tmp_path: Path, demo: _Demo | None) -> None:
    if "skip" in block.markers:
        pytest.skip(f"{block.id}: {block.skip_reason}")
    done = run_block(block, tmp_path, demo)
    assert done.returncode == 0, (
        f"{block.id} exited {done.returncode}\n--- block ---\n{block.code}--- stdout ---\n{done.stdout[-4000:]}"
        f"--- stderr ---\n{done.stderr[-4000:]}")


def _decide(home: Path, work: Path) -> subprocess.CompletedProcess:
    env = _env(home, work)
    token = subprocess.run([str(BIN / "ztcp"), "token", "issue", "--sub", "emp-0042", "--role", "case_officer",
                            "--method", "fido2", "--mfa"], cwd=work, env=env, capture_output=True, text=True,
                           check=True, timeout=60).stdout.strip()
    return subprocess.run([str(BIN / "ztcp"), "pdp", "decide", "--input", "examples/decision-request.json"],
                          cwd=work, env={**env, "ZTCP_SUBJECT_TOKEN": token}, capture_output=True, text=True,
                          check=False, timeout=60)


def test_the_by_hand_example_answers_what_the_readme_says(tmp_path: Path, demo: _Demo) -> None:
    """Permit (assigned_case) on a fresh home; deny (no_case, exit 2) once the demo's registers replace
    the sample ones. A newcomer ran it after the demo and got a deny nothing had told them about."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "reason `assigned_case`" in readme and "reason `no_case`" in readme
    work, home = _scratch(tmp_path)
    fresh = _decide(home, work)
    assert fresh.returncode == 0 and fresh.stdout.startswith("PERMIT") and "assigned_case" in fresh.stdout, fresh
    shutil.rmtree(home)
    shutil.copytree(demo.seeded_home(), home)
    after = _decide(home, work)
    assert after.returncode == 2 and after.stdout.startswith("DENY") and "no_case" in after.stdout, after


def test_the_demo_summary_says_how_to_trace_a_citizen(demo: _Demo) -> None:
    """The tour's auditor needs a token and a citizen: the demo's summary shows how to get both."""
    demo.seeded_home()
    summary = demo.log.read_text(encoding="utf-8")
    assert "ztcp token issue --sub aud-01 --role auditor" in summary
    assert re.search(r"ztcp audit trace --citizen-ref cr_[A-Z2-7]{52}\b", summary), summary[-2000:]
