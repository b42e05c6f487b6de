"""Tokens file parsing, authentication and the method policy."""

import hashlib

import pytest
from berth.client.errors import PermissionDenied, Unauthenticated

from services.common import auth


def _table(tmp_path, text):
    path = tmp_path / "tokens.toml"
    path.write_text(text)
    return auth.TokenTable.load(path)


def test_plain_and_hashed_tokens_both_authenticate(tmp_path):
    digest = hashlib.sha256(b"s3cret").hexdigest()
    table = _table(
        tmp_path,
        f'[[tokens]]\nname="a"\ntoken="plain"\nroles=["admin"]\n'
        f'[[tokens]]\nname="b"\ntoken_sha256="{digest}"\nroles=["reader"]\n',
    )
    assert table.authenticate("Bearer plain").name == "a"
    assert table.authenticate("bearer s3cret").roles == frozenset({"reader"})


@pytest.mark.parametrize("header", [None, "", "Bearer", "Basic abc", "Bearer nope"])
def test_missing_or_wrong_credentials_are_unauthenticated(tmp_path, header):
    table = _table(tmp_path, '[[tokens]]\ntoken="t"\nroles=["admin"]\n')
    with pytest.raises(Unauthenticated):
        table.authenticate(header)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('[[tokens]]\ntoken="t"\nroles=["god"]\n', "roles must be"),
        ('[[tokens]]\ntoken="t"\nroles=["agent"]\n', "needs the host"),
        ('[[tokens]]\nroles=["admin"]\n', "needs token"),
        ("", "no [[tokens]]"),
    ],
)
def test_a_bad_tokens_file_says_what_is_wrong(tmp_path, text, says):
    with pytest.raises(ValueError, match=says.replace("[", r"\[")):
        _table(tmp_path, text)


def test_the_policy_lets_readers_read_and_agents_report():
    policy = auth.MethodPolicy(
        read_methods=frozenset({"/s/List"}), agent_methods=frozenset({"/s/Beat"})
    )
    reader = auth.Principal("r", frozenset({"reader"}))
    agent = auth.Principal("a", frozenset({"agent"}), host="h1")
    assert policy.allows(reader, "/s/List") and not policy.allows(reader, "/s/Beat")
    assert policy.allows(agent, "/s/Beat") and not policy.allows(agent, "/s/List")
    assert not policy.allows(reader, "/s/Delete")
    assert policy.allows(auth.ANONYMOUS_ADMIN, "/s/Delete")


def test_an_agent_acts_for_its_own_host_only():
    token = auth.current_principal.set(auth.Principal("a", frozenset({"agent"}), host="h1"))
    try:
        auth.require_host("h1")
        with pytest.raises(PermissionDenied, match="may not act for 'h2'"):
            auth.require_host("h2")
    finally:
        auth.current_principal.reset(token)
