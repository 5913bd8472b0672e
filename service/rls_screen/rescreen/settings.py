"""Settings of the event-driven re-screen (prefix RLS_SCREEN_RESCREEN_): one pydantic-settings class.

Read by ``rls-screen serve`` (the notification endpoint and its workers) and ``rls-screen subscribe``
(which puts the same secret into the Subscription's header). The FHIR server, its allowlist and its
credentials stay in ``rls_screen.settings``. ``get_rescreen_settings()`` builds it once, never at import.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_SECRET_CHARS = 32
"""A notification secret shorter than this is refused: it is all that stands between the endpoint and anyone."""


class RescreenSettings(BaseSettings):
    """Every knob of the re-screen; field descriptions are the operator documentation (docs/subscriptions.md)."""

    model_config = SettingsConfigDict(env_prefix="RLS_SCREEN_RESCREEN_", extra="ignore")

    secret: SecretStr | None = Field(
        default=None,
        description="Shared secret the FHIR server sends in the X-Rls-Screen-Secret header of every notification "
        f"(at least {MIN_SECRET_CHARS} characters). Unset: the notification endpoint is off.",
    )
    callback_allowlist: str = Field(
        default="",
        description="Comma-separated notification URLs `rls-screen subscribe --callback` may register "
        "(exact URLs): the FHIR server sends patient data there, so only a URL the site chose is accepted.",
    )
    db: Path | None = Field(
        default=None, description="SQLite file of the re-screen queue (default: <state_dir>/rescreen.sqlite3)."
    )
    debounce_s: float = Field(
        default=2.0,
        ge=0,
        le=600,
        description="A patient is re-screened this long after the last notification about them, so the results "
        "of one panel (one transaction, several notifications) give one re-screen.",
    )
    max_wait_s: float = Field(
        default=30.0,
        ge=0,
        le=3600,
        description="Longest a patient waits while notifications keep arriving (debouncing never postpones "
        "a re-screen past this).",
    )
    workers: int = Field(default=2, ge=1, le=16, description="Patients re-screened at once (threads per process).")
    max_attempts: int = Field(
        default=6, ge=1, le=50, description="Tries of one re-screen that fails on transient errors before it is failed."
    )
    retry_base_s: float = Field(
        default=5.0, gt=0, le=3600, description="Pause before the first retry, doubled for each next (with jitter)."
    )
    retry_max_s: float = Field(default=600.0, gt=0, le=86400, description="Longest pause between retries.")
    lease_s: float = Field(
        default=300.0,
        ge=10,
        le=86400,
        description="A claimed patient whose worker died is taken again after this long (survives a crash).",
    )

    @field_validator("secret")
    @classmethod
    def _secret_is_long(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if len(value.get_secret_value()) < MIN_SECRET_CHARS or any(c in value.get_secret_value() for c in "\r\n"):
            raise ValueError(f"must be at least {MIN_SECRET_CHARS} characters on one line")
        return value

    @property
    def callbacks(self) -> tuple[str, ...]:
        return tuple(url.strip().rstrip("/") for url in self.callback_allowlist.split(",") if url.strip())

    def db_path(self, state_dir: Path) -> Path:
        return self.db if self.db is not None else state_dir / "rescreen.sqlite3"


@lru_cache(maxsize=1)
def get_rescreen_settings() -> RescreenSettings:
    """The process-wide re-screen settings, read once from the environment."""
    return RescreenSettings()
