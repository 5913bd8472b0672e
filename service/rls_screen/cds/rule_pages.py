"""The routes of the rule documentation: ``GET /rules/``, ``/rules/<version>/`` and ``/rules/<version>/<rule-id>``.

Open without a JWT (a clinician's browser follows a card's link; ``app.OPEN_PREFIXES``), read-only,
built once at start-up from ``rls_screen.ruledocs``. Unknown versions and rule ids get a 404 HTML page
that says what is served. Responses forbid every external resource (Content-Security-Policy) and
content sniffing; the pages need neither.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import HTMLResponse, RedirectResponse, Response

from rls_screen.ruledocs import RuleDocs

RULES_PREFIX = "/rules"
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "public, max-age=300",
}


def rule_pages_router(docs: RuleDocs) -> APIRouter:
    router = APIRouter(prefix=RULES_PREFIX, tags=["Rule documentation"])

    def html(status: int, text: str) -> Response:
        return HTMLResponse(text, status_code=status, headers=HEADERS)

    @router.get("", include_in_schema=False)
    async def rules_root() -> Response:
        return RedirectResponse("rules/", status_code=308)  # relative: kept under a proxy's path prefix

    @router.get("/", summary="The rule sets this service documents")
    async def index() -> Response:
        return html(*docs.page())

    @router.get("/{version}", include_in_schema=False)
    async def version_without_slash(version: str) -> Response:
        return RedirectResponse(f"{version}/", status_code=308)

    @router.get("/{version}/", summary="One rule set: its rules, sources and clinical specification")
    async def version_page(version: str) -> Response:
        return html(*docs.page(version))

    @router.get("/{version}/{rule_id}", summary="One rule of a rule set")
    async def rule_page(version: str, rule_id: str) -> Response:
        return html(*docs.page(version, rule_id))

    @router.get("/{version}/{rule_id}/{rest:path}", include_in_schema=False)
    async def below_a_rule(version: str, rule_id: str, rest: str) -> Response:
        return html(404, docs.not_found(f"Rule set {version} has no rule {rule_id}/{rest}.", version))

    return router
