"""Settings of the CDS Hooks service: one pydantic-settings class (env prefix RLS_SCREEN_).

The FHIR knobs the service shares with the rest of the module (FHIR_BASE_URL, the allowlist,
timeouts) stay in ``rls_screen.settings``; this class holds what only the CDS service reads.
``get_cds_settings()`` builds it once (never at import); the app factory takes an instance, so
tests pass their own.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024


def split_list(text: str) -> tuple[str, ...]:
    """A comma-separated setting as a tuple of trimmed, non-empty items."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


class CdsSettings(BaseSettings):
    """Every knob of ``rls-screen serve``; field descriptions are the operator documentation."""

    model_config = SettingsConfigDict(env_prefix="RLS_SCREEN_", extra="ignore")

    public_url: str | None = Field(
        default=None,
        description="Base URL of this service as the EHR calls it (e.g. https://cds.example.org); "
        "a JWT's aud must equal it + the request path (CDS Hooks 2.0, Trusting CDS Clients).",
    )
    app_client_id: str | None = Field(
        default=None,
        description="OAuth client id of the clinician app (SMART on FHIR). With RLS_SCREEN_PUBLIC_URL set, "
        "patient-view cards carry a 'smart' link to <public URL>/app/launch.",
    )
    cds_card_mode: Literal["one-card", "per-finding"] = Field(
        default="one-card",
        description="patient-view cards: 'one-card' (one card per call: the most important finding, then a table "
        "of all of them) or 'per-finding' (one card per finding, as before 2026-12). Order checks are per check.",
    )
    cds_trusted_issuers_file: Path | None = Field(
        default=None,
        description='JSON file {"<iss>": {"jwks": {"keys": [...]}}} or {"<iss>": {"jwks_uri": "https://..."}}, '
        'each optionally with "jku": [...], the JWK Set URLs that issuer\'s tokens may name.',
    )
    cds_dev_mode: bool = Field(
        default=False,
        description="Development only: turns JWT verification OFF (logged loudly at start-up).",
    )
    cds_jku_allowlist: str = Field(
        default="",
        description="Removed: it let any trusted issuer's token name any listed JWK Set. Each issuer's 'jku' list "
        "in the trusted-issuers file replaces it; a non-empty value stops start-up (docs/cds-hooks.md).",
    )
    cds_deadline_ms: int = Field(
        default=3000,
        ge=50,
        le=60000,
        description="Hard per-request deadline; past it the service answers {'cards': []} and logs why.",
    )
    cds_cors_origins: str = Field(
        default="", description="Comma-separated origins allowed by CORS ('*' for any); empty: CORS off."
    )
    cds_feedback_db: Path | None = Field(
        default=None,
        description="SQLite file for feedback, issued cards and the JWT replay cache when RLS_SCREEN_STATE_URL is "
        "unset (default: <state_dir>/cds.sqlite3).",
    )
    cds_state_pool_size: int = Field(
        default=8,
        ge=1,
        le=64,
        description="PostgreSQL connections per worker process for the state store (RLS_SCREEN_STATE_URL); "
        "size the server's max_connections for replicas x workers x this. Unused with SQLite.",
    )
    cds_override_suppression_days: int = Field(
        default=30,
        ge=0,
        le=3650,
        description="Days an overridden card stays hidden for that patient and finding unless its data changes.",
    )
    cds_system_actions: bool = Field(
        default=False, description="Send the RiskAssessment and Flags as systemActions with patient-view cards."
    )
    cds_max_body_bytes: int = Field(
        default=8 * MIB, ge=1024, le=256 * MIB, description="Request bodies larger than this get 413."
    )
    cds_jwt_leeway_s: int = Field(default=60, ge=0, le=600, description="Clock skew allowed on exp, iat, nbf.")
    cds_jwt_max_lifetime_s: int = Field(
        default=3600,
        ge=60,
        le=86400,
        description="Tokens whose exp lies further ahead are refused (bounds the jti cache).",
    )
    cds_jwks_cache_s: int = Field(default=300, ge=0, le=86400, description="How long a fetched JWK Set is reused.")
    cds_fhir_max_retries: int = Field(
        default=1, ge=0, le=5, description="Retries of a FHIR read made on the EHR's server (inside the deadline)."
    )
    cds_subject_salt: SecretStr | None = Field(
        default=None,
        description="Salt for the hashed patient keys in the feedback database (set one per deployment).",
    )

    @field_validator("public_url")
    @classmethod
    def _public_url_is_absolute(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise ValueError("must be an absolute http(s) URL without query or fragment")
        return value.strip().rstrip("/")

    @field_validator("app_client_id")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value.strip() if value and value.strip() else None

    @property
    def cors_origins(self) -> tuple[str, ...]:
        return split_list(self.cds_cors_origins)

    def feedback_db_path(self, state_dir: Path) -> Path:
        return self.cds_feedback_db if self.cds_feedback_db is not None else state_dir / "cds.sqlite3"


@lru_cache(maxsize=1)
def get_cds_settings() -> CdsSettings:
    """The process-wide CDS settings, read once from the environment."""
    return CdsSettings()
