"""The extractor of the docs runner: what it runs, what it writes, what it refuses."""

import pytest

from docblocks import Block, DocError, Marker, blocks

VALID = [
    # (document, [(kind, line, text, marker, target), …])
    ("```sh\necho hi\n```\n", [("sh", 2, "echo hi\n", None, None)]),
    ("text\n\n```bash\na\nb\n```\n", [("sh", 4, "a\nb\n", None, None)]),
    ("```python\nprint(1)\n```\n", [("python", 2, "print(1)\n", None, None)]),
    ("```toml\n# repo/x.toml\n[a]\n```\n", [("file", 2, "# repo/x.toml\n[a]\n", None, "repo/x.toml")]),
    ("```toml\n[features]\nx = 1\n```\n", [("show", 2, "[features]\nx = 1\n", None, None)]),
    ("```json\n{}\n```\n```text\nout\n```\n", [("show", 2, "{}\n", None, None), ("show", 5, "out\n", None, None)]),
    # an indented fence inside a list item loses its indentation
    ("- item:\n\n  ```sh\n  echo a\n    echo b\n  ```\n", [("sh", 4, "echo a\n  echo b\n", None, None)]),
    (
        "<!-- docs-test: skip: builds the project -->\n```sh\ncargo build\n```\n",
        [("sh", 3, "cargo build\n", Marker("skip", "builds the project"), None)],
    ),
    (
        "<!--docs-test: fails: INVALID_STATE_TRANSITION-->\n```python\nraise SystemExit(1)\n```\n",
        [("python", 3, "raise SystemExit(1)\n", Marker("fails", "INVALID_STATE_TRANSITION"), None)],
    ),
    # an ordinary comment before a fence is not a marker
    ("<!-- a note -->\n```sh\ntrue\n```\n", [("sh", 3, "true\n", None, None)]),
]


@pytest.mark.parametrize("doc,want", VALID)
def test_valid(doc, want):
    got = [(b.kind, b.line, b.text, b.marker, b.target) for b in blocks(doc, "d.md")]
    assert got == want


INVALID = [
    ("```\nno language\n```\n", "a fence without a language"),
    ("```sh\nnever closed\n", "never closed"),
    ("<!-- docs-test: ignore: x -->\n```sh\ntrue\n```\n", "unknown docs-test marker 'ignore'"),
    ("<!-- docs-test: skip -->\n```sh\ntrue\n```\n", "needs a text"),
    ("<!-- docs-test skip: x -->\n```sh\ntrue\n```\n", "malformed docs-test marker"),
    ("<!-- docs-test: skip: x -->\n```json\n{}\n```\n", "a docs-test marker on a block that is not run"),
    ("```toml\n# ../escape.toml\n```\n", "relative path inside the session"),
    ("```toml\n# /etc/x.toml\n```\n", "relative path inside the session"),
]


@pytest.mark.parametrize("doc,message", INVALID)
def test_invalid(doc, message):
    with pytest.raises(DocError, match=message.replace("(", r"\(")) as e:
        blocks(doc, "d.md")
    assert str(e.value).startswith("d.md:")


def test_where_names_the_document_and_line():
    (b,) = blocks("# t\n\n```sh\ntrue\n```\n", "docs/x.md")
    assert isinstance(b, Block) and b.where == "docs/x.md:4"
