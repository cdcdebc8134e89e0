"""The fenced blocks of a Markdown document, as the docs runner executes them.

A document is read top to bottom. Each fenced block (```lang … ```, indented or not) becomes a
`Block` with the line its content starts on. What a block is for follows from its language:

    sh, bash, shell   run with bash, in the document's session            -> Block.kind == "sh"
    python, py        run with python, each block a script of its own      -> "python"
    toml              whose first line is `# <relative path>.toml`: written
                      to that path in the session's directory              -> "file"
    anything else     (json, toml samples, text, …) shown, not run         -> "show"

A fence without a language is an error: tag output as ```text so that nothing runnable is
silently skipped. The line right before a fence may hold one marker, an HTML comment that the
rendered page does not show:

    <!-- docs-test: skip: <why> -->        the block is not run (it cannot run in the test command)
    <!-- docs-test: fails: <text> -->      the block must fail, and its output must contain <text>

A marker on a block that is not run, an unknown marker or a marker with no reason is an error.

Grammar of a marker line (after stripping surrounding white space):

    marker  ::= "<!--" ws "docs-test:" ws verb ":" ws text ws "-->"
    verb    ::= "skip" | "fails"
    text    ::= one or more characters, not "-->"
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

RUN_SH = {"sh", "bash", "shell"}
RUN_PY = {"python", "py"}

_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[^`\s]*)\s*$")
_MARKER = re.compile(r"^<!--\s*docs-test:\s*(?P<verb>[a-z-]+)\s*(?::\s*(?P<text>.*?))?\s*-->$")
_FILE_HEADER = re.compile(r"^#\s*(?P<path>[A-Za-z0-9_./-]+\.toml)\s*$")


class DocError(ValueError):
    """A document the runner cannot execute as written; the message names the line."""


@dataclass(frozen=True)
class Marker:
    verb: str  # "skip" or "fails"
    text: str


@dataclass(frozen=True)
class Block:
    path: str  # the document, as given
    line: int  # 1-based line of the block's first content line
    lang: str
    kind: str  # "sh", "python", "file" or "show"
    text: str  # the content, with the fence's indentation removed
    marker: Marker | None = None
    target: str | None = None  # for kind "file": the relative path to write

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def parse_marker(line: str, where: str) -> Marker:
    m = _MARKER.match(line.strip())
    if not m:
        raise DocError(f"{where}: malformed docs-test marker {line.strip()!r} (want <!-- docs-test: skip: why -->)")
    verb, text = m.group("verb"), (m.group("text") or "").strip()
    if verb not in ("skip", "fails"):
        raise DocError(f"{where}: unknown docs-test marker {verb!r} (known: skip, fails)")
    if not text:
        raise DocError(f"{where}: the docs-test marker {verb!r} needs a text after ':'")
    return Marker(verb, text)


def _kind(lang: str, body: str, where: str) -> tuple[str, str | None]:
    if lang in RUN_SH:
        return "sh", None
    if lang in RUN_PY:
        return "python", None
    if lang == "toml":
        first = body.split("\n", 1)[0]
        m = _FILE_HEADER.match(first.strip())
        if m:
            target = m.group("path")
            if target.startswith("/") or ".." in target.split("/"):
                raise DocError(f"{where}: a file block must name a relative path inside the session, not {target!r}")
            return "file", target
    return "show", None


def blocks(text: str, path: str = "<doc>") -> list[Block]:
    """Every fenced block of `text`, in order."""
    lines = text.split("\n")
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence_line = i + 1
        indent, lang = m.group("indent"), m.group("lang").lower()
        where = f"{path}:{fence_line}"
        if not lang:
            raise DocError(f"{where}: a fence without a language (tag output as ```text)")
        marker = None
        if i > 0 and lines[i - 1].strip().startswith("<!--") and "docs-test" in lines[i - 1]:
            marker = parse_marker(lines[i - 1], f"{path}:{i}")
        body: list[str] = []
        j = i + 1
        while j < len(lines):
            if re.match(rf"^{re.escape(indent)}```\s*$", lines[j]) or lines[j].strip() == "```":
                break
            raw = lines[j]
            body.append(raw[len(indent) :] if raw.startswith(indent) else raw.lstrip())
            j += 1
        else:
            raise DocError(f"{where}: the block is never closed")
        content = "\n".join(body) + "\n"
        kind, target = _kind(lang, content, where)
        if marker is not None and kind not in ("sh", "python"):
            raise DocError(f"{where}: a docs-test marker on a block that is not run ({lang})")
        out.append(Block(path, fence_line + 1, lang, kind, content, marker, target))
        i = j + 1
    return out


def documents(root: Path) -> list[Path]:
    """The documents whose examples run: README.md and every Markdown file under docs/."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]
