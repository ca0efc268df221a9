"""No function in spectrum_core/ is longer than MAX_FUNCTION_LINES unless a ``# long:`` comment
says why it cannot be split.

A function's length runs from its first decorator (or its ``def``) to its last line, inclusive.
The comment counts when it is inside those lines or on the line directly above the first one,
and it must give a reason: ``# long: <why>``.
"""

from __future__ import annotations

import ast
import io
import re
import textwrap
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "spectrum_core"

# About what fits on one screen: a function that long can be read whole, and one much longer is
# usually doing several things that read better as named parts. Where splitting would hurt (a
# tight loop whose locals are shared), a ``# long:`` comment says so instead.
MAX_FUNCTION_LINES = 60

_LONG_COMMENT = re.compile(r"#\s*long:\s*\S")


def _long_comment_lines(source: str) -> set[int]:
    """Line numbers of the ``# long: <reason>`` comments (comments only, not text in strings)."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return {tok.start[0] for tok in tokens if tok.type == tokenize.COMMENT and _LONG_COMMENT.match(tok.string)}


def over_long_functions(source: str, limit: int = MAX_FUNCTION_LINES) -> list[tuple[int, str, int]]:
    """(first line, name, length) of each function in ``source`` longer than ``limit`` lines
    without a ``# long:`` comment in its lines or directly above them."""
    explained = _long_comment_lines(source)
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        last = node.end_lineno or node.lineno
        length = last - first + 1
        if length > limit and not any(first - 1 <= line <= last for line in explained):
            found.append((first, node.name, length))
    return sorted(found)


def test_no_function_is_over_the_limit_without_a_reason():
    offenders = [
        f"{path.relative_to(ROOT).as_posix()}:{line} {name} ({length} lines)"
        for path in sorted(PACKAGE.rglob("*.py"))
        for line, name, length in over_long_functions(path.read_text(encoding="utf-8"))
    ]
    assert not offenders, (
        f"functions over {MAX_FUNCTION_LINES} lines; split them into named parts, or say in a "
        "'# long: <reason>' comment why one cannot be split:\n" + "\n".join(offenders)
    )


def _function(name: str, body_lines: int, *, decorated: bool = False, comment: str = "", above: str = "") -> str:
    lines = ([above] if above else []) + (["@decorator"] if decorated else []) + [f"def {name}():"]
    lines += ([f"    {comment}"] if comment else []) + [f"    x = {i}" for i in range(body_lines)]
    return "\n".join(lines) + "\n"


def test_the_check_counts_decorators_and_accepts_only_a_reasoned_comment():
    source = "\n".join(
        [
            _function("fits", 4),
            _function("too_long", 5),
            _function("decorated", 4, decorated=True),
            _function("explained", 9, comment="# long: one loop over shared locals"),
            _function("explained_above", 9, above="# long: a table written out whole"),
            _function("no_reason", 9, comment="# long:"),
            _function("in_a_string", 9, comment="s = '# long: not a comment'"),
        ]
    )
    names = [name for _, name, _ in over_long_functions(source, limit=5)]
    assert names == ["too_long", "decorated", "no_reason", "in_a_string"]
    nested = textwrap.dedent(
        """\
        def outer():
            def inner():
                a = 1
                b = 2
                c = 3
            return inner
        """
    )
    assert [(name, length) for _, name, length in over_long_functions(nested, limit=4)] == [("outer", 6)]
