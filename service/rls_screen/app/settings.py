"""Settings of the SMART app (env prefix RLS_SCREEN_APP_): off unless RLS_SCREEN_APP_CLIENT_ID is set.

The FHIR servers the app may be launched from are the module's allowlist (FHIR_BASE_URL,
RLS_SCREEN_FHIR_ALLOWLIST); the authorization servers it may send users to and call are listed here.
"""

from __future__ import annotations

import re
from functools import lru_cache

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

READ_TYPES = ("Patient", "Observation", "Condition", "Procedure", "MedicationRequest", "RiskAssessment", "Flag")
DEFAULT_SCOPE = " ".join(
    (
        "openid",
        "fhirUser",
        "profile",  # the user's name, shown in the banner
        *(f"patient/{kind}.rs" for kind in READ_TYPES),
        "patient/Flag.u",
        "patient/ServiceRequest.rsu",
        "patient/Provenance.c",
    )
)


class AppSettings(BaseSettings):
    """Every knob of the SMART app; field descriptions are the operator documentation."""

    model_config = SettingsConfigDict(env_prefix="RLS_SCREEN_APP_", extra="ignore")

    client_id: str | None = Field(
        default=None, description="The app's client_id as registered with the EHR's authorization server; unset: off."
    )
    client_secret: SecretStr | None = Field(
        default=None,
        description="Confidential client: sent with HTTP Basic at the token endpoint; unset: public client.",
    )
    auth_servers: str = Field(
        default="",
        description="Comma-separated base URLs of the authorization servers the app may use: the "
        "authorization, token and JWK Set endpoints a smart-configuration names must lie under one of them.",
    )
    smart_configuration_url: str | None = Field(
        default=None,
        description="Used only for an allowlisted FHIR server that publishes no .well-known/smart-configuration "
        "(404): where its SMART configuration is published instead (the local HAPI: the auth server's).",
    )
    scope: str = Field(default=DEFAULT_SCOPE, description="Scopes asked for (launch or launch/patient is added).")
    session_ttl_s: int = Field(default=3600, ge=60, le=43200, description="Longest life of a signed-in session.")
    launch_ttl_s: int = Field(default=600, ge=30, le=3600, description="Time allowed between launch and callback.")
    frame_ancestors: str = Field(
        default="'self'",
        description="CSP frame-ancestors: the EHR origins that may embed the app (space-separated sources).",
    )

    @field_validator("frame_ancestors")
    @classmethod
    def _one_csp_directive(cls, value: str) -> str:
        # the value goes into a header: no second directive, no line break
        if not value.strip() or not re.fullmatch(r"[A-Za-z0-9 :/.*'_-]+", value):
            raise ValueError("must be CSP sources separated by spaces (e.g. 'self' https://ehr.example.org)")
        return value.strip()


@lru_cache(maxsize=1)
def get_app_settings() -> AppSettings:
    """The process-wide app settings, read once from the environment."""
    return AppSettings()
