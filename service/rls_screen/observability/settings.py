"""Settings of the observability edges: one pydantic-settings class (env prefix RLS_SCREEN_).

Built by ``get_observability_settings()`` (cached, never at import); tests build their own.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ObservabilitySettings(BaseSettings):
    """Logs, traces and metrics knobs; field descriptions are the operator documentation (docs/deploy.md)."""

    model_config = SettingsConfigDict(env_prefix="RLS_SCREEN_", extra="ignore")

    log_format: Literal["auto", "json", "text"] = Field(
        default="auto",
        description="auto: JSON lines when stderr is not a terminal (a container, a CronJob), text on a terminal.",
    )
    otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP traces endpoint (e.g. http://otel-collector:4318/v1/traces); unset: no traces "
        "exported and no traceparent sent. Needs the 'otel' extra (pip install 'rls-screen[otel]').",
    )
    otlp_headers: SecretStr | None = Field(
        default=None, description="Headers sent with each export, 'name=value,name2=value2' (e.g. an API key)."
    )
    otlp_timeout_s: float = Field(default=5.0, gt=0, le=60, description="Timeout of one span export.")
    service_name: str = Field(default="rls-screen", description="service.name of the exported spans.")
    metrics_pushgateway: str | None = Field(
        default=None,
        description="Prometheus Pushgateway base URL: `rls-screen batch` pushes its figures there after each "
        "round (a CronJob lives too briefly to be scraped). Unset: not pushed.",
    )
    progress_log_every_s: float = Field(
        default=30.0, gt=0, description="Without a terminal, a batch logs a progress line this often."
    )


@lru_cache(maxsize=1)
def get_observability_settings() -> ObservabilitySettings:
    """The process-wide settings, read once from the environment."""
    return ObservabilitySettings()
