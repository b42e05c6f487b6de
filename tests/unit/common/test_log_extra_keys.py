"""A log call whose `extra` names a LogRecord attribute raises KeyError at run time — after
the change it reports has been made, so the caller gets INTERNAL for a change that happened.
Every `extra={...}` literal in the code base is checked here instead."""

import ast
import logging
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
RESERVED = set(vars(logging.LogRecord("n", 0, "p", 0, "m", None, None))) | {"message", "asctime"}


def _extra_keys(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (
            isinstance(node, ast.keyword)
            and node.arg == "extra"
            and isinstance(node.value, ast.Dict)
        ):
            for key in node.value.keys:
                if isinstance(key, ast.Constant) and isinstance(key.value, str):
                    yield node.lineno, key.value


def test_no_log_call_overwrites_a_log_record_attribute():
    sources = [
        p for d in ("services", "clients", "bench", "tools") for p in (ROOT / d).rglob("*.py")
    ]
    assert sources, "the source tree was not found"
    clashes = [
        f"{path.relative_to(ROOT)}:{line}: {key!r}"
        for path in sources
        for line, key in _extra_keys(path)
        if key in RESERVED
    ]
    assert not clashes, "extra keys that logging refuses:\n" + "\n".join(clashes)
