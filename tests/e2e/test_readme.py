"""The README's commands run as written, in order, against `berth up` (as doctests do).

A ```console block right after the marker comment below is run line by line (`$ ` lines,
a trailing `  # comment` left out). Each command must succeed, unless the README shows an
`ERROR (Kind): …` line under it: then it must fail with that kind. When the README shows a
table under a command, the command's first table must have the same columns.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.berth_up import BERTH, BIN, Stack, berth_up

pytestmark = pytest.mark.slow
README = Path(__file__).resolve().parents[2] / "README.md"
MARKER = "<!-- readme-test:"
_COMMENT = re.compile(r"\s{2,}#\s.*$")
_ERROR = re.compile(r"^ERROR \((\w+)\)")


@dataclass
class Step:
    command: str
    error: str | None = None  # "ERROR (Unimplemented)" when the README shows one
    columns: list[str] | None = None  # the header of the first table the README shows


def readme_steps(text: str) -> list[Step]:
    steps: list[Step] = []
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if not line.startswith(MARKER):
            continue
        assert lines[index + 1] == "```console", f"README line {index + 2}: a console block"
        for body in lines[index + 2 :]:
            if body == "```":
                break
            if body.startswith("$ "):
                steps.append(Step(_COMMENT.sub("", body[2:])))
            elif (found := _ERROR.match(body)) and steps:
                steps[-1].error = found.group(0)
            elif body.startswith("| ") and steps and steps[-1].columns is None:
                steps[-1].columns = _cells(body)
    return steps


def _cells(row: str) -> list[str]:
    return [cell.strip() for cell in row.strip().strip("|").split("|")]


def test_the_readme_marks_its_runnable_blocks():
    steps = readme_steps(README.read_text())
    assert len(steps) >= 30, [s.command for s in steps]
    assert all(s.command.startswith(("berth ", "openstack ")) for s in steps)
    assert any(s.command.startswith("openstack ") for s in steps)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with berth_up(Path(tmp_path_factory.mktemp("readme")) / "data") as running:
        wait_for_the_demo_fleet(running)
        yield running


def wait_for_the_demo_fleet(stack: Stack, within_s: float = 120) -> None:
    """Until every demo node is reported and the scheduler's cache holds them all."""
    deadline = time.monotonic() + within_s
    while True:
        listed = run(stack, "berth --json scheduler-hosts")
        if listed.returncode == 0 and len(json.loads(listed.stdout)) == 6:
            return
        assert time.monotonic() < deadline, listed.stdout + listed.stderr
        time.sleep(0.5)


def run(stack: Stack, command: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "BERTH_REGISTRY_URL": stack.registry,
        "BERTH_NODE_URL": stack.servers["node"],
        "BERTH_SCHEDULER_URL": stack.servers["scheduler"],
        # As the README's export line says, at this stack's API.
        "OS_AUTH_TYPE": "none",
        "OS_ENDPOINT": stack.compute_api,
        "OS_IDENTITY_API_VERSION": "3",
    }
    assert BERTH.endswith("/berth")
    return subprocess.run(
        ["bash", "-c", command], env=env, capture_output=True, text=True, timeout=120
    )


def test_the_readme_commands_run_in_order_against_berth_up(stack):
    for step in readme_steps(README.read_text()):
        done = run(stack, step.command)
        said = f"$ {step.command}\n{done.stdout}{done.stderr}"
        if step.error:
            assert done.returncode != 0, f"expected {step.error}:\n{said}"
            assert done.stderr.startswith(step.error), f"expected {step.error}:\n{said}"
            continue
        assert done.returncode == 0, said
        if step.columns:
            header = next((line for line in done.stdout.splitlines() if line.startswith("| ")), "")
            assert _cells(header) == step.columns, said
