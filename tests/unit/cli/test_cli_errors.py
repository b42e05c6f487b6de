"""Failures print one `ERROR (Class): sentence` line (plus field violations), never a traceback."""

from __future__ import annotations

import io

import pytest
from berth.cli.main import main
from berth.client import errors
from cli_fakes import FakeRegistry, Run


def failing(method: str, exc: BaseException) -> FakeRegistry:
    return FakeRegistry(fail={method: exc})


def test_a_server_error_is_one_line_on_stderr_and_exit_code_1():
    run = Run(
        ["aggregate-show", "rack9"],
        failing("get_aggregate", errors.NotFound("no aggregate 'rack9'")),
    )

    assert run.code == 1
    assert run.err == "ERROR (NotFound): no aggregate 'rack9'\n"
    assert run.out == ""


def test_field_violations_follow_the_error_line_one_per_line():
    bad = errors.InvalidArgument(
        "the request has 2 bad fields",
        violations=[
            errors.FieldViolation("service.key.host", "must not be empty"),
            errors.FieldViolation("disabled_reason", "at most 255 characters"),
        ],
    )

    run = Run(["service-disable", "h", "b", "--reason", "x"], failing("disable_service", bad))

    assert run.code == 1
    assert run.err.splitlines() == [
        "ERROR (InvalidArgument): the request has 2 bad fields",
        "  service.key.host: must not be empty",
        "  disabled_reason: at most 255 characters",
    ]


def test_a_violation_already_in_the_sentence_is_not_repeated():
    bad = errors.InvalidArgument.field("page_size", "must not be negative")

    run = Run(["service-list"], failing("list_services", bad))

    assert run.err == "ERROR (InvalidArgument): page_size: must not be negative\n"


def test_host_describe_on_a_release_without_it_prints_the_servers_sentence():
    sentence = "host-describe needs the node service, which this release does not run yet"

    run = Run(["host-describe", "cmp1"], failing("describe_host", errors.Unimplemented(sentence)))

    assert run.code == 1
    assert run.err == f"ERROR (Unimplemented): {sentence}\n"


def test_ctrl_c_exits_130_quietly():
    run = Run(["service-list"], failing("list_services", KeyboardInterrupt()))

    assert (run.code, run.out, run.err) == (130, "", "")


def test_a_closed_pipe_on_stdout_ends_quietly():
    run = Run(["service-list"], failing("list_services", BrokenPipeError()))

    assert (run.code, run.err) == (1, "")


def test_an_unexpected_exception_is_one_line_not_a_traceback():
    run = Run(["aggregate-list"], failing("list_aggregates", RuntimeError("boom")))

    assert run.code == 1
    assert len(run.err.splitlines()) == 1
    assert run.err.startswith("ERROR (RuntimeError): boom")


def test_berth_debug_shows_the_traceback_of_an_unexpected_exception():
    with pytest.raises(RuntimeError):
        Run(
            ["aggregate-list"],
            failing("list_aggregates", RuntimeError("boom")),
            env={"BERTH_DEBUG": "1"},
        )


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["--registry", "http://r:1", "service-list"],
            "ERROR (InvalidArgument): target: unsupported",
        ),
        (["--registry", "registry", "host-list"], "ERROR (InvalidArgument): target: 'registry'"),
        (
            ["--tls-ca-file", "/nonexistent/ca.pem", "service-list"],
            "ERROR (InvalidArgument): tls_ca_file: cannot read /nonexistent/ca.pem",
        ),
    ],
)
def test_bad_connection_options_are_reported_before_any_call(argv, expected):
    out, err = io.StringIO(), io.StringIO()

    code = main(argv, env={}, stdout=out, stderr=err)  # the real client: fails before a socket

    assert code == 1
    assert err.getvalue().startswith(expected)
    assert len(err.getvalue().splitlines()) == 1
