"""Runs the examples of README.md and docs/ against the real binary, so that an example that stops
working fails the test command.

Each document is one session: a fresh directory, the examples run in it top to bottom, as a reader
following the page would run them (see `docblocks.py` for what runs and the markers).

- Shell blocks run with `bash -eo pipefail` in the session's directory. Variables assigned in one
  block are seen by the next ones (the session keeps every exported and assigned variable, and the
  working directory), so `RUN_ID=$(…)` in one block serves `"$RUN_ID"` in a later one.
- Python blocks run as scripts of their own (a reader copies them one at a time), with the
  session's environment at that point: what the shell blocks exported reaches them.
- `plinth` is the binary under test (PLINTH_BIN). `plinth server …` (with or without a trailing
  `&`) starts the session's server in the background on the session's free port with the given
  flags and environment, replacing the one started before, and returns once it is ready.
  `127.0.0.1:5000` and `localhost:5000` in an example are that port.
- `python` is this virtualenv's interpreter (it has mlflow-skinny, pyarrow, pandas and requests).
- `curl` fails on an HTTP error status (`--fail-with-body`), so an example that gets a 4xx or 5xx
  fails; a block that shows a refusal is marked `fails`.
- `PLINTH_SERVER` is preset to the session's server, as the plinth commands' default
  (`http://127.0.0.1:5000`) would be for a reader; `MLFLOW_TRACKING_URI` is not: the examples set it.

A failure shows the block's place in its document, the block, its output and the server's log.
At the end the session's servers are stopped; a panic in their output fails the document.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from docblocks import Block, blocks, documents

ROOT = Path(__file__).resolve().parents[2]
BLOCK_TIMEOUT_S = 300
_DEFAULT_ADDRESS = re.compile(r"\b(?:127\.0\.0\.1|localhost):5000\b")
# `plinth server … &` (after optional VAR=value words): the wrapper backgrounds the server itself.
_SERVER_AMP = re.compile(r"^(?P<cmd>\s*(?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)*plinth\s+server\b[^#&]*?)\s*&(?P<rest>\s*(?:#.*)?)$")

WRAPPER = r"""#!/usr/bin/env bash
# `plinth` as the docs examples call it: the binary under test, except that `plinth server …`
# (re)starts the session's server in the background and returns once it is ready.
set -euo pipefail
real="$DOCS_TEST_PLINTH"
if [ "${1:-}" != server ]; then exec "$real" "$@"; fi
shift
pidfile="$DOCS_TEST_DIR/server.pid"
if [ -f "$pidfile" ]; then
    old=$(cat "$pidfile")
    kill -TERM "$old" 2>/dev/null || true
    for _ in $(seq 1 200); do kill -0 "$old" 2>/dev/null || break; sleep 0.05; done
    rm -f "$pidfile"
fi
args=("$@")
case " $* " in *" --port "*|*" --port="*|*" -p "*) ;; *) args+=(--port "$DOCS_TEST_PORT") ;; esac
log="$DOCS_TEST_DIR/server-$(date +%s%N).log"
"$real" server "${args[@]}" >"$log" 2>&1 </dev/null &
pid=$!
echo "$pid" > "$pidfile"
for _ in $(seq 1 1200); do
    if grep -q "listening on" "$log"; then exit 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "plinth server exited before it was ready:" >&2
        cat "$log" >&2
        exit 1
    fi
    sleep 0.05
done
echo "plinth server not ready after 60 s:" >&2
cat "$log" >&2
exit 1
"""


def _plinth_bin() -> Path:
    explicit = os.environ.get("PLINTH_BIN")
    if explicit:
        return Path(explicit)
    target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache" / "plinth" / "target"))
    return target / "debug" / "plinth"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Session:
    """One document's run: its directory, environment, server and shell state."""

    def __init__(self, tmp: Path):
        self.dir = tmp / "work"
        self.meta = tmp / "meta"
        self.dir.mkdir()
        self.meta.mkdir()
        self.port = _free_port()
        binary = _plinth_bin()
        if not binary.exists():
            pytest.fail(f"plinth binary not found at {binary} (set PLINTH_BIN or build it)")
        bindir = self.meta / "bin"
        bindir.mkdir()
        wrapper = bindir / "plinth"
        wrapper.write_text(WRAPPER)
        wrapper.chmod(0o755)
        real_curl = shutil.which("curl")
        if real_curl:
            curl = bindir / "curl"
            curl.write_text(f"#!/bin/sh\n# An HTTP error status fails the example that got it.\nexec {real_curl} --fail-with-body \"$@\"\n")
            curl.chmod(0o755)
        python_bin = Path(sys.executable).parent
        env = {
            k: v
            for k, v in os.environ.items()
            # Nothing of the test command's own settings leaks into what a reader would have.
            if not k.startswith(("PLINTH", "MLFLOW_", "DOCS_TEST_", "CARGO", "RUST_BACKTRACE"))
        }
        env.update(
            PATH=f"{bindir}:{python_bin}:{env.get('PATH', '/usr/bin:/bin')}",
            DOCS_TEST_PLINTH=str(binary),
            DOCS_TEST_DIR=str(self.meta),
            DOCS_TEST_PORT=str(self.port),
            PYTHONUNBUFFERED="1",
            # The MLflow client retries refused calls; an example that fails should fail quickly.
            MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
            # What the plinth commands default to (http://127.0.0.1:5000), on the session's port.
            PLINTH_SERVER=f"http://127.0.0.1:{self.port}",
        )
        self.state = self.meta / "state.sh"
        self.state.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()))
        self.cwd_file = self.meta / "cwd"
        self.cwd_file.write_text(str(self.dir))
        self.base_env = env

    # -- running ---------------------------------------------------------------------------

    def localize(self, text: str) -> str:
        text = _DEFAULT_ADDRESS.sub(f"127.0.0.1:{self.port}", text)
        return "\n".join(_SERVER_AMP.sub(r"\g<cmd>\g<rest>", line) for line in text.split("\n"))

    def env(self) -> dict[str, str]:
        """The environment the shell blocks have built so far."""
        out = subprocess.run(
            ["bash", "-c", f"source {shlex.quote(str(self.state))} && env -0"],
            capture_output=True,
            env=self.base_env,
            check=True,
        ).stdout
        return dict(item.split("=", 1) for item in out.decode().split("\0") if "=" in item)

    def run(self, block: Block) -> tuple[int, str]:
        text = self.localize(block.text)
        cwd = Path(self.cwd_file.read_text().strip())
        if block.kind == "sh":
            # Line numbers in bash's messages match the document: the preamble is one line and the
            # block starts on its own line number.
            preamble = (
                f"source {shlex.quote(str(self.state))}; "
                f"trap 'export -p > {shlex.quote(str(self.state))}; pwd > {shlex.quote(str(self.cwd_file))}' EXIT; "
                "trap 'echo \"docs-test: line $LINENO failed: $BASH_COMMAND\" >&2' ERR; "
                "set -eo pipefail -o allexport"
            )
            script = preamble + "\n" * max(1, block.line - 1) + text
            path = self.meta / (Path(block.path).name + ".sh")
            path.write_text(script)
            argv = ["bash", str(path)]
        else:
            script = "\n" * (block.line - 1) + text
            path = self.meta / (Path(block.path).name + ".py")
            path.write_text(script)
            argv = [sys.executable, str(path)]
        try:
            proc = subprocess.run(
                argv,
                cwd=cwd,
                env=self.env() if block.kind == "python" else self.base_env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=BLOCK_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired as e:
            return 124, (e.stdout or b"").decode(errors="replace") + f"\n(timed out after {BLOCK_TIMEOUT_S}s)"
        return proc.returncode, proc.stdout.decode(errors="replace")

    def write(self, block: Block) -> None:
        cwd = Path(self.cwd_file.read_text().strip())
        target = cwd / block.target
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(block.text)

    # -- servers ---------------------------------------------------------------------------

    def server_log(self) -> str:
        logs = sorted(self.meta.glob("server-*.log"))
        return "".join(f"--- {p.name} ---\n{p.read_text(errors='replace')}" for p in logs)

    def close(self) -> list[str]:
        problems = []
        pidfile = self.meta / "server.pid"
        if pidfile.exists():
            pid = int(pidfile.read_text().strip())
            try:
                os.kill(pid, signal.SIGTERM)
                for _ in range(200):
                    os.kill(pid, 0)
                    time.sleep(0.05)
                os.kill(pid, signal.SIGKILL)
                problems.append("the server did not stop within 10 s of SIGTERM")
            except ProcessLookupError:
                pass
        if "panicked at" in self.server_log():
            problems.append("a server panicked")
        return problems


def _describe(block: Block, text: str, output: str, session: Session, why: str) -> str:
    numbered = "\n".join(f"{block.line + i:5} | {line}" for i, line in enumerate(text.rstrip("\n").split("\n")))
    return (
        f"{block.where}: {why}\n--- the block ---\n{numbered}\n--- its output (tail) ---\n{output[-6000:]}"
        f"\n--- server log (tail) ---\n{session.server_log()[-4000:]}"
    )


DOCS = documents(ROOT)


@pytest.mark.parametrize("doc", DOCS, ids=[str(p.relative_to(ROOT)) for p in DOCS])
def test_examples_run(doc: Path, tmp_path: Path):
    rel = str(doc.relative_to(ROOT))
    all_blocks = blocks(doc.read_text(), rel)
    session = Session(tmp_path)
    try:
        for block in all_blocks:
            if block.kind == "file":
                session.write(block)
                continue
            if block.kind == "show" or (block.marker and block.marker.verb == "skip"):
                continue
            rc, output = session.run(block)
            text = session.localize(block.text)
            if block.marker and block.marker.verb == "fails":
                if rc == 0:
                    pytest.fail(_describe(block, text, output, session, "was expected to fail, and succeeded"), pytrace=False)
                if block.marker.text not in output:
                    pytest.fail(
                        _describe(block, text, output, session, f"failed, but its output lacks {block.marker.text!r}"),
                        pytrace=False,
                    )
            elif rc != 0:
                pytest.fail(_describe(block, text, output, session, f"exited with status {rc}"), pytrace=False)
    finally:
        problems = session.close()
    if problems:
        pytest.fail(f"{rel}: " + "; ".join(problems) + "\n" + session.server_log()[-6000:], pytrace=False)


def test_every_document_is_covered():
    """A new document is picked up by the glob; this guards against the glob going empty."""
    names = {str(p.relative_to(ROOT)) for p in DOCS}
    assert {"README.md", "docs/quickstart.md", "docs/registry.md", "docs/features.md"} <= names


if shutil.which("bash") is None:  # pragma: no cover - every supported machine has bash
    pytest.exit("the docs runner needs bash", returncode=1)
