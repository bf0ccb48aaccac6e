"""The explorer's ASGI app (FastAPI on Starlette): server-rendered pages and their JSON API.

Every page is rendered on the server, so it works before (and without) any
script; the lineage page adds an interactive graph drawn by Cytoscape.js from
the same data, served from this app (no CDN). Each page has a JSON twin under
``/api``, described by the OpenAPI document at ``/api/openapi.json``.

Rules the whole app follows, in one place (`_guard`):

- **read-only**: GET and HEAD only; a request with a body is refused (413);
  nothing here writes the ledger (the index follower writes only the index);
- **limits**: URLs over 4 KiB (414), page sizes and depths bounded by the
  reader (400);
- **token**: with ``token`` set every request needs ``Authorization: Bearer
  TOKEN`` or the cookie ``/login?token=TOKEN`` sets (401 otherwise);
- **headers**: a restrictive Content-Security-Policy (scripts, styles, images
  and connections from this origin only, no framing, no plugins), nosniff, no
  referrer;
- **errors**: typed provanchor errors become 400 (bad input), 404 (not in the
  index) or 503 (a service that went away, named); anything else is a 500 that
  says "internal error" and nothing more. No stack trace ever reaches a
  response.
"""

from __future__ import annotations

import hmac
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path as FilePath
from typing import Any

from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from provanchor import __version__
from provanchor.errors import (
    BadInput,
    BlockNotFound,
    ConfigError,
    NotInIndex,
    ProvanchorError,
    ServiceUnavailable,
    UnknownEvent,
    UnknownRun,
    UsageError,
)
from provanchor.explorer.follower import Follower
from provanchor.explorer.reader import MAX_CONTENT, MAX_PREVIEW, Explorer

__all__ = ["CSP", "create_app"]

HERE = FilePath(__file__).resolve().parent
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
MAX_URL = 4096
_SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
_COOKIE = "provanchor_token"
RECORD_ID = Path(..., pattern=r"^(b[a-z2-7]{20,100}|(0x)?[0-9a-fA-F]{64})$", description="A record's CID (or hash)")
CONTENT_ID = Path(..., pattern=r"^(b[a-z2-7]{20,100}|Qm[1-9A-HJ-NP-Za-km-z]{44})$", description="A content CID")
ADDRESS = Path(..., pattern=r"^0x[0-9a-fA-F]{40}$", description="An agent's address")
RUN_ID = Path(..., min_length=1, max_length=200, description="A run id")


def _status_of(exc: ProvanchorError) -> int:
    # A block the IPFS node answered it does not have is a 404; a node that does not answer is IpfsUnavailable.
    if isinstance(exc, NotInIndex | UnknownRun | UnknownEvent | BlockNotFound):
        return 404
    if isinstance(exc, ServiceUnavailable):
        return 503
    if isinstance(exc, UsageError | BadInput):
        return 400
    if isinstance(exc, ConfigError):
        return 503
    return 400


def _service_named(exc: Exception) -> str | None:
    """Which service a failure points at, for the 'service down' page."""
    text = f"{type(exc).__name__} {exc}".lower()
    if "chain" in text or "rpc" in text:
        return "the chain (JSON-RPC)"
    if "ipfs" in text or "block" in text or "kubo" in text:
        return "IPFS"
    if "index" in text:
        return "the index"
    return None


def _one_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:500]


def create_app(explorer: Explorer, follower: Follower | None = None, token: str | None = None) -> FastAPI:
    app = FastAPI(
        title="provanchor explorer",
        version=__version__,
        description="Read-only views of a provanchor ledger: records, live verification, lineage, agents, runs "
        "and the state of a location at a time.",
        openapi_url="/api/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
    templates.filters["urlencode"] = lambda value: urllib.parse.quote(str(value), safe="")
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        state = follower.state.to_json() if follower is not None else None
        html = templates.get_template(name).render(request=request, follow=state, version=__version__, **context)
        return HTMLResponse(html, status_code=status)

    def wants_html(request: Request) -> bool:
        return not request.url.path.startswith("/api/")

    def error_response(request: Request, status: int, message: str, service: str | None = None) -> Response:
        if wants_html(request):
            return render(request, "error.html", status=status, status_code=status, message=message, service=service)
        body: dict[str, Any] = {"error": message, "status": status}
        if service is not None:
            body["service"] = service
        return JSONResponse(body, status_code=status)

    @app.exception_handler(ProvanchorError)
    async def provanchor_error(request: Request, exc: ProvanchorError) -> Response:
        status = _status_of(exc)
        return error_response(request, status, _one_line(exc), _service_named(exc) if status == 503 else None)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in exc.errors()
        )
        return error_response(request, 400, f"bad request: {problems}"[:500])

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return error_response(request, exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, OSError | TimeoutError):  # a connection the services refused: name it
            return error_response(request, 503, f"a service is unavailable: {_one_line(exc)}", _service_named(exc))
        return error_response(request, 500, "internal error (the explorer's log has no more: report the URL)")

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        refused = _guard(request, token)
        response = error_response(request, *refused) if refused is not None else await call_next(request)
        for name, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    # ------------------------------------------------------------------ pages

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/search", status_code=303)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> RedirectResponse:
        return RedirectResponse("/static/favicon.svg", status_code=301)

    @app.get("/login", include_in_schema=False)
    def login(token_given: str = Query("", alias="token")) -> Response:
        if token is None:
            return RedirectResponse("/search", status_code=303)
        if not hmac.compare_digest(token_given.encode(), token.encode()):
            return JSONResponse({"error": "wrong token", "status": 401}, status_code=401)
        response = RedirectResponse("/search", status_code=303)
        response.set_cookie(_COOKIE, token, httponly=True, samesite="strict")
        return response

    @app.get("/search", response_class=HTMLResponse, include_in_schema=False)
    def search_page(request: Request) -> HTMLResponse:
        params = dict(request.query_params)
        result = explorer.search(params) if _has_criteria(params) else None
        return render(request, "search.html", result=result, params=params, query=_query_without_page(params))

    @app.get("/record/{record_id}", response_class=HTMLResponse, include_in_schema=False)
    def record_page(request: Request, record_id: str) -> HTMLResponse:
        record = explorer.record(record_id)
        report = explorer.verify(record_id)
        preview, preview_error = _preview(explorer, record)
        return render(request, "record.html", record=record, report=report.to_json(), preview=preview,
                      preview_error=preview_error)

    @app.get("/lineage", response_class=HTMLResponse, include_in_schema=False)
    def lineage_page(request: Request, location: str = "", depth: str = "3", direction: str = "both") -> HTMLResponse:
        graph = explorer.lineage(location, depth, direction).to_json() if location else None
        return render(request, "lineage.html", graph=graph, location=location, depth=depth, direction=direction)

    @app.get("/agent/{address}", response_class=HTMLResponse, include_in_schema=False)
    def agent_page(request: Request, address: str) -> HTMLResponse:
        return render(request, "agent.html", agent=explorer.agent(address))

    @app.get("/run/{run_id}", response_class=HTMLResponse, include_in_schema=False)
    def run_page(request: Request, run_id: str) -> HTMLResponse:
        return render(request, "run.html", run=explorer.run(run_id))

    @app.get("/state", response_class=HTMLResponse, include_in_schema=False)
    def state_page(request: Request, location: str = "", at: str = "") -> HTMLResponse:
        state = explorer.state(location, at) if location and at else None
        return render(request, "state.html", state=state, location=location, at=at)

    # ------------------------------------------------------------------ API

    @app.get("/api/search", summary="Records matching every criterion, a page at a time")
    def api_search(
        location: str | None = Query(None, description="A location URI, or a path prefix on any host"),
        user: str | None = None,
        since: str | None = Query(None, description="ISO 8601 or Unix seconds, inclusive"),
        until: str | None = Query(None, description="ISO 8601 or Unix seconds, inclusive"),
        code_hash: str | None = Query(None, description="sha256 of a code identity, 64 hex digits"),
        program: str | None = Query(None, description="Path of an executable or script"),
        agent: str | None = Query(None, description="Agent address"),
        run: str | None = Query(None, description="Run id"),
        op: str | None = None,
        page: int = Query(1, ge=1, le=50),
        page_size: int = Query(50, ge=1, le=200),
    ) -> dict[str, Any]:
        given = {"location": location, "user": user, "since": since, "until": until, "code_hash": code_hash,
                 "program": program, "agent": agent, "run": run, "op": op}
        params = {k: v for k, v in given.items() if v is not None}
        return explorer.search({**params, "page": str(page), "page_size": str(page_size)}).to_json()

    @app.get("/api/record/{record_id}", summary="Every field of a record and its anchoring")
    def api_record(record_id: str = RECORD_ID) -> dict[str, Any]:
        return explorer.record(record_id)

    @app.get("/api/record/{record_id}/verify", summary="The record verified live against the chain and IPFS")
    def api_verify(record_id: str = RECORD_ID) -> dict[str, Any]:
        return explorer.verify(record_id).to_json()

    @app.get("/api/content/{cid}", summary="Content bytes, hashed against their CID", response_class=Response)
    def api_content(cid: str = CONTENT_ID, name: str = Query("content", max_length=200)) -> Response:
        data = explorer.content(cid)
        safe = "".join(c for c in name if c.isalnum() or c in "._-")[:100] or "content"
        return Response(data, media_type="application/octet-stream",
                        headers={"Content-Disposition": f'attachment; filename="{safe}"'})

    @app.get("/api/lineage", summary="The lineage graph of a location, to a depth")
    def api_lineage(
        location: str = Query(..., min_length=1),
        depth: int = Query(3, ge=0, le=20),
        direction: str = Query("both", pattern="^(upstream|downstream|both)$"),
    ) -> dict[str, Any]:
        return explorer.lineage(location, depth, direction).to_json()

    @app.get("/api/agent/{address}", summary="An agent's checkpoints, anchoring lag and problems")
    def api_agent(address: str = ADDRESS) -> dict[str, Any]:
        return explorer.agent(address)

    @app.get("/api/run/{run_id}", summary="A run: code identity, inputs, outputs, last replay")
    def api_run(run_id: str = RUN_ID) -> dict[str, Any]:
        return explorer.run(run_id)

    @app.get("/api/state", summary="The tree of a location at a time, replayed")
    def api_state(location: str = Query(..., min_length=1), at: str = Query(..., min_length=1)) -> dict[str, Any]:
        return explorer.state(location, at)

    @app.get("/api/state.tar", summary="The tree of a location at a time, as a .tar.gz", response_class=Response)
    def api_state_tar(location: str = Query(..., min_length=1), at: str = Query(..., min_length=1)) -> Response:
        name, data = explorer.state_tar(location, at)
        return Response(data, media_type="application/gzip",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @app.get("/api/health", summary="The explorer and the services it reads")
    def api_health() -> dict[str, Any]:
        return {"version": __version__, "follow": follower.state.to_json() if follower is not None else None,
                "rpc_url": explorer.network.rpc_url, "contract": explorer.network.contract}

    return app


def _guard(request: Request, token: str | None) -> tuple[int, str] | None:
    """(status, reason) when the request must be refused before any work, else None."""
    if request.method not in ("GET", "HEAD"):
        return 405, "the explorer is read-only: GET and HEAD only"
    if len(str(request.url)) > MAX_URL:
        return 414, f"the URL is over {MAX_URL} bytes"
    length = request.headers.get("content-length")
    if (length is not None and length not in ("", "0")) or request.headers.get("transfer-encoding"):
        return 413, "the explorer takes no request bodies"
    if token is not None and request.url.path != "/login" and not request.url.path.startswith("/static/"):
        given = request.headers.get("authorization", "")
        cookie = request.cookies.get(_COOKIE, "")
        expected = f"Bearer {token}"
        if not (hmac.compare_digest(given.encode(), expected.encode()) or hmac.compare_digest(cookie.encode(),
                                                                                           token.encode())):
            return 401, "a token is required (Authorization: Bearer TOKEN, or open /login?token=TOKEN once)"
    return None


def _has_criteria(params: dict[str, str]) -> bool:
    return any(v.strip() for k, v in params.items() if k not in ("page", "page_size"))


def _query_without_page(params: dict[str, str]) -> str:
    return urllib.parse.urlencode({k: v for k, v in params.items() if k != "page" and v})


def _preview(explorer: Explorer, record: dict[str, Any]) -> tuple[str | None, str | None]:
    """A text preview of the record's content: (text, None), (None, why not), or (None, None) without content."""
    after = record.get("after")
    if not after or not after.get("cid"):
        return None, None
    if int(after.get("size") or 0) > MAX_CONTENT:
        return None, f"{int(after['size']):,} bytes: too large to preview, download it"
    try:
        data = explorer.content(after["cid"])
    except ProvanchorError as exc:
        return None, _one_line(exc)
    try:
        text = data[:MAX_PREVIEW].decode("utf-8")
    except UnicodeDecodeError:
        return None, f"binary content ({len(data):,} bytes): download it"
    return text + ("\n…" if len(data) > MAX_PREVIEW else ""), None
