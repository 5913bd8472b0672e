"""CDS Hooks 2.0 service: discovery, the patient-view and order services, feedback, JWT checks.

Modules by role: ``app`` (FastAPI wiring, errors, deadline), ``services`` (what discovery lists),
``prefetch`` (prefetch or FHIR reads), ``runtime`` (one call end to end), ``cards`` (wording),
``orders`` (draft-order drug matching), ``auth`` (JWT), ``feedback`` (SQLite store), ``settings``.
"""

from rls_screen.cds.app import create_app

__all__ = ["create_app"]
