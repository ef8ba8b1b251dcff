"""Printing a rewritten module from the original text of its kept statements gives the
same bytes as LibCST printing it whole, on every Python file of the fixtures."""

from __future__ import annotations

from pathlib import Path

import libcst as cst
import pytest

from apex2native.index import TreeIndex
from apex2native.splice import _statement_runs, module_code

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SOURCES = sorted(p for p in FIXTURES.rglob("*.py"))

EDGE_CASES = {
    "decorators_and_comments": (
        "# header\n\nimport os\n\n\n@decorator(\n    1,\n)\n\n@other\n"
        "def f():\n    x = 1\n    # trailing, indented\n\n# leading\nclass A:\n    pass\n"
        "\n\nx = 1; y = (\n    2)\n# footer\n"
    ),
    "no_trailing_newline": "import os\nx = 1",
    "crlf": "import os\r\nx = 1\r\n",
    "only_comments": "# nothing\n",
    "form_feed": "import os\n\x0c\ndef f():\n    pass\n",
    # a blank line ending in a backslash is one LibCST line over two lines of text
    "backslash_line": "a = 1\n  \\\n\nx = 1\n",
    # texts LibCST does not print back as they are: the output must still be its printing
    "blank_lines_at_the_end": "x = 1\n\n \n",
    "indented_comments_at_the_end": "import os\ndef f():\n    pass\n  # mid\n  # two\n",
    "backslash_between_statements": "a = 1\n\\\nx = 1\n",
}


def _texts() -> list[tuple[str, str]]:
    out = []
    for path in SOURCES:
        try:
            text = path.read_text(encoding="utf-8").removeprefix("\ufeff")  # as decode() gives it
            out.append((str(path.relative_to(FIXTURES)), text))
        except UnicodeDecodeError:
            continue
    return out + sorted(EDGE_CASES.items())


@pytest.mark.parametrize("name,text", _texts(), ids=lambda v: v if "\n" not in v else "")
def test_kept_statements_print_as_libcst_prints_them(name: str, text: str) -> None:
    try:
        module = cst.parse_module(text)
    except cst.ParserSyntaxError:
        pytest.skip("not parsable by LibCST")
    index = TreeIndex(module, text=text)
    assert module_code(index, text, module) == module.code
    changed = module.with_changes(
        body=[s.deep_clone() if i % 2 else s for i, s in enumerate(module.body)]
    )
    assert module_code(index, text, changed) == changed.code
    dropped = module.with_changes(body=module.body[1:])
    assert module_code(index, text, dropped) == dropped.code


def test_statements_are_cut_from_the_text_not_printed_again() -> None:
    text = EDGE_CASES["decorators_and_comments"]
    module = cst.parse_module(text)
    runs = _statement_runs(TreeIndex(module, text=text), text)
    assert runs == [
        "import os\n",
        "\n\n@decorator(\n    1,\n)\n\n@other\ndef f():\n    x = 1\n    # trailing, indented\n",
        "\n# leading\nclass A:\n    pass\n",
        "\n\nx = 1; y = (\n    2)\n",
    ]


def test_fixture_sources_print_back_as_they_are() -> None:
    """The premise of reusing text: LibCST prints an unchanged module as its source."""
    for name, text in _texts():
        if name in EDGE_CASES:
            continue
        try:
            module = cst.parse_module(text)
        except cst.ParserSyntaxError:
            continue
        assert module.code == text, name


@pytest.mark.parametrize(
    "name",
    [
        "no_trailing_newline",
        "crlf",
        "backslash_line",
        "blank_lines_at_the_end",
        "indented_comments_at_the_end",
        "backslash_between_statements",
    ],
)
def test_texts_whose_lines_are_not_plain_are_printed_whole(name: str) -> None:
    text = EDGE_CASES[name]
    assert _statement_runs(TreeIndex(cst.parse_module(text), text=text), text) is None


def test_a_kept_statement_is_taken_from_the_text_it_was_parsed_from() -> None:
    """A statement the rewrite kept is copied, not printed: given a text whose kept line
    differs (same shape), the output carries that text, which LibCST could not print."""
    text = "import os\nx = 1\ny = 2\n"
    module = cst.parse_module(text)
    index = TreeIndex(module, text=text)
    changed = module.with_changes(body=[cst.parse_statement("import sys\n"), *module.body[1:]])
    assert module_code(index, text.replace("x = 1", "x = 7"), changed) == (
        "import sys\nx = 7\ny = 2\n"
    )
