"""Typed settings for every Berth process, from BERTH_* variables and an optional TOML file."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import Field, FilePath, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

ENV_PREFIX = "BERTH_"
# The compute agent's binary: the registry and the node service find a host's agent by it.
COMPUTE_BINARY = "berth-compute"


class CommonSettings(BaseSettings):
    """What every process needs: where it listens, who it is, how it talks to the registry."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # The binary name this process registers as; each process class sets its own.
    binary: ClassVar[str] = "berth"
    default_port: ClassVar[int] = 0

    config: Path | None = Field(None, description="TOML file with these settings (env wins)")
    host: str = Field(default_factory=socket.gethostname, min_length=1, max_length=255)
    listen: str = Field("", description="host:port to serve gRPC on; port 0 picks a free one")
    data_dir: Path = Path("data")
    auth_file: Path | None = Field(None, description="TOML file of bearer tokens and roles")
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = Field(None, description="require client certs (mTLS)")
    # How this process reaches the registry (its own registration and heartbeats).
    registry_url: str = "127.0.0.1:50051"
    token: str | None = Field(None, description="bearer token this process presents")
    tls_ca_file: Path | None = Field(None, description="CA bundle to verify servers")
    # The certificate this process presents on its own calls to servers that require one
    # (BERTH_TLS_CLIENT_CA_FILE there); only TLS channels carry it.
    tls_client_cert_file: FilePath | None = Field(None, description="client certificate (mTLS)")
    tls_client_key_file: FilePath | None = Field(
        None, description="key of that certificate", validate_default=True
    )
    report_interval: float = Field(10.0, gt=0, description="seconds between heartbeats")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    metrics_listen: str = Field("", description="host:port for Prometheus /metrics; empty: off")
    shutdown_grace: float = Field(10.0, ge=0, description="seconds to drain calls on stop")
    # The endpoint other processes should use to reach this one (default: the bound address).
    advertise: str = ""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        import os

        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(f"{ENV_PREFIX}CONFIG")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    @field_validator("listen", "metrics_listen", "advertise")
    @classmethod
    def _host_port(cls, value: str) -> str:
        if value:
            split_host_port(value)
        return value

    @field_validator("tls_key_file")
    @classmethod
    def _key_needs_cert(cls, value: Path | None, info: Any) -> Path | None:
        if value is not None and info.data.get("tls_cert_file") is None:
            raise ValueError("needs BERTH_TLS_CERT_FILE too")
        return value

    @field_validator("tls_client_key_file")
    @classmethod
    def _client_key_and_cert_go_together(cls, value: Path | None, info: Any) -> Path | None:
        if "tls_client_cert_file" not in info.data:
            return value  # the certificate's own error says what is wrong with it
        cert = info.data["tls_client_cert_file"]
        if value is None and cert is not None:
            raise ValueError("BERTH_TLS_CLIENT_CERT_FILE is set: give its key too")
        if value is not None and cert is None:
            raise ValueError("needs BERTH_TLS_CLIENT_CERT_FILE too")
        return value

    @property
    def listen_address(self) -> str:
        return self.listen or f"127.0.0.1:{self.default_port}"

    def bound_address(self, port: int) -> str:
        """The listen address with the port the server really bound (port 0 picks one)."""
        return f"{self.listen_address.rsplit(':', 1)[0]}:{port}"

    def endpoint(self, port: int) -> str:
        """Where other processes reach this one: BERTH_ADVERTISE, else the bound address."""
        return self.advertise or self.bound_address(port)


class ServerSettings(CommonSettings):
    """A server that may run as several processes on one port: registry, node, scheduler."""

    # One Python process uses one core. BERTH_WORKERS processes share the port
    # (SO_REUSEPORT, see workers.py), each with its own connections and caches; they
    # share what replicas share, so every rule that holds across replicas holds for them.
    workers: int = Field(1, ge=1, le=64, description="server processes on this port (one per core)")


def split_host_port(value: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` -> (host, port); raises ValueError with a sentence."""
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{value!r} is not host:port")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r}: port must be a number from 0 to 65535")
    return host.strip("[]"), int(port)


S = TypeVar("S", bound=CommonSettings)


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Build settings or stop the process with one line per bad variable."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        reported = set()
        for error in exc.errors():
            name = ENV_PREFIX + str(error["loc"][0]).upper() if error["loc"] else "BERTH_CONFIG"
            if name not in reported:  # a union type reports one error per member: say it once
                reported.add(name)
                print(f"{cls.binary}: invalid setting {name}: {error['msg']}", file=sys.stderr)
        raise SystemExit(2) from None
    except SettingsError as exc:  # a value the environment source could not even parse
        print(f"{cls.binary}: invalid setting: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
