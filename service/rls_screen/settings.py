"""Runtime settings: one pydantic-settings class, read from the environment (prefix RLS_SCREEN_).

FHIR_BASE_URL (no prefix, shared with the deploy scripts) is the default server for every command.
Settings are built by ``get_settings()`` (cached, never at import) so tests can override them.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_FHIR_BASE_URL = "http://127.0.0.1:8080/fhir"


class Settings(BaseSettings):
    """Every knob of the module; field docs are the operator documentation."""

    model_config = SettingsConfigDict(env_prefix="RLS_SCREEN_", extra="ignore")

    fhir_base_url: str = Field(
        default=DEFAULT_FHIR_BASE_URL,
        validation_alias=AliasChoices("FHIR_BASE_URL", "RLS_SCREEN_FHIR_BASE_URL"),
        description="Default FHIR server; always on the allowlist.",
    )
    fhir_allowlist: str = Field(default="", description="Comma-separated extra FHIR base URLs the module may call.")
    fhir_bearer_token: SecretStr | None = Field(default=None, description="Static bearer token.")
    fhir_connect_timeout_s: float = 3.0
    fhir_read_timeout_s: float = 30.0
    fhir_max_retries: int = 3
    fhir_max_pages: int = Field(default=50, description="Upper bound on Bundle next-link paging.")
    smart_token_url: str | None = Field(default=None, description="SMART Backend Services token endpoint.")
    smart_client_id: str | None = None
    smart_private_key_file: Path | None = Field(default=None, description="PEM private key (RS384/ES384).")
    smart_algorithm: str = "RS384"
    smart_key_id: str = "rls-screen"
    smart_scope: str | None = Field(
        default=None,
        description="Scopes to ask for; default: what the command needs (see rls_screen.scopes). The grant must "
        "cover what the command needs either way.",
    )
    conceptmap_dir: Path | None = Field(
        default=None,
        description="Directory of site ConceptMaps (local lab code -> LOINC), added to the shipped ones.",
    )
    bulk_download_workers: int = Field(
        default=4, ge=1, le=16, description="Bulk $export files downloaded at once (batch --bulk)."
    )
    bulk_max_wait_s: float = Field(
        default=3600.0, gt=0, description="Longest wait for a Bulk $export to complete, in seconds."
    )
    bulk_poll_max_s: float = Field(
        default=30.0,
        ge=1,
        description="Longest pause between Bulk $export status requests, even when Retry-After asks for more.",
    )
    patient_link_template: str | None = Field(
        default=None,
        description="Link per patient in the batch worklist: an http(s) URL with {patient_id} (URL-encoded there), "
        "e.g. the EHR's chart or the clinician app (https://ehr.example.org/chart/{patient_id}); none without it.",
    )
    state_dir: Path = Field(default=Path("var"), description="Where job databases and reports are written.")
    state_url: SecretStr | None = Field(
        default=None,
        description="The shared state store for every part (CDS feedback and issued cards, JWT replay cache, batch "
        "jobs, re-screen queue, --since marks): postgresql://user@host/db for replicas and runners that share it, or "
        "an SQLite file path. Unset: each part keeps its own SQLite file under state_dir (one host). rls_screen.state.",
    )

    def state_url_text(self) -> str | None:
        return self.state_url.get_secret_value() if self.state_url is not None else None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
