"""The RLS workup summary: a SMART on FHIR clinician app served by ``rls-screen serve`` under /app.

Layers: ``settings`` (RLS_SCREEN_APP_*), ``smart`` (discovery, PKCE, the token exchange, the
id_token check: SMART App Launch 2.0), ``sessions`` (server-side launch and user sessions: tokens
never reach the browser), ``routes`` (the FastAPI router), ``pages`` / ``charts`` (server-rendered
HTML and inline SVG, no script), ``actions`` (writes with the user's own token). docs/smart-app.md.
"""
