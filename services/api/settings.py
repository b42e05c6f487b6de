"""berth-api's settings (BERTH_* variables; see services/common/settings.py for the rest)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from services.common.settings import CommonSettings


class ApiSettings(CommonSettings):
    binary: ClassVar[str] = "berth-api"
    # Nova's port.
    default_port: ClassVar[int] = 8774

    node_url: str = Field("127.0.0.1:50052", min_length=1)
    scheduler_url: str = Field("127.0.0.1:50053", min_length=1)
    # Seconds each call to a Berth service may take before the request answers 503.
    backend_timeout: float = Field(30.0, gt=0)
    # Nova's osapi_max_request_body_size: a longer body answers 413.
    max_body_bytes: int = Field(114_688, ge=1024)
    # The project of servers booted through a URL without one (Nova's /v2.1/servers), as
    # `berth boot`'s default.
    default_project: str = Field("demo", min_length=1, max_length=255)
    # The public address clients are told in links (`http://host:port`); empty: the
    # address the request came to.
    public_url: str = ""
