"""FinFlow's HTTP side, served beside the Streamlit app by ``serve.py`` (Streamlit's ASGI mode).

Streamlit cannot set a cookie, so these small Starlette routes do it:

* ``GET /finflow/session?code=...`` swaps the one-time hand-over code that sign-in put in
  the page (as an image) for the browser's session token, set as an ``HttpOnly;
  SameSite=Strict`` cookie (``Secure`` over HTTPS). The token is never in a URL or a page;
  the code works once, for two minutes.
* ``GET /finflow/session/end`` ends the cookie's session and deletes the cookie (sign-out).
* :class:`UploadGuard` refuses Streamlit's upload endpoint (``/_stcore/upload_file/``) to any
  request without a live session cookie: before sign-in nobody can push files into memory.

Design of the sessions themselves: :mod:`finflow_core.services.browser_sessions`.
"""

from __future__ import annotations

from http.cookies import SimpleCookie
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from finflow_app import resources

COOKIE = "finflow_session"
HANDOFF_PATH = "/finflow/session"
END_PATH = "/finflow/session/end"
UPLOAD_PREFIX = "/_stcore/upload_file/"
#: A transparent 1x1 GIF: the page loads the routes as images.
PIXEL = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c000000000100010000020144003b")
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "") == "https"


def _pixel(status: int = 200) -> Response:
    return Response(PIXEL, status_code=status, media_type="image/gif", headers=NO_STORE)


def hand_over(request: Request) -> Response:
    """The cookie for a fresh sign-in (a plain function: Starlette runs it in a thread)."""
    token = resources.gate().sessions.hand_over(request.query_params.get("code", ""))
    if token is None:
        return _pixel(403)
    response = _pixel()
    response.set_cookie(COOKIE, token.token, max_age=token.max_age, path="/", httponly=True,
                        samesite="strict", secure=_secure(request))
    return response


def end(request: Request) -> Response:
    resources.gate().sessions.end_by_token(request.cookies.get(COOKIE))
    response = _pixel()
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=_secure(request))
    return response


def routes() -> list[Route]:
    return [Route(HANDOFF_PATH, hand_over, methods=["GET"]), Route(END_PATH, end, methods=["GET"])]


def cookie_of(scope: dict[str, Any]) -> str | None:
    """The session cookie of a raw ASGI request."""
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # a malformed Cookie header is no session
                return None
            if COOKIE in jar:
                return jar[COOKIE].value
    return None


class UploadGuard:
    """ASGI middleware: uploads only from a browser with a live session."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("path", "").startswith(UPLOAD_PREFIX):
            token = cookie_of(scope)
            live = await run_in_threadpool(resources.gate().sessions.is_live, token)
            if not live:
                refusal = PlainTextResponse("sign in to FinFlow before uploading a file", status_code=403,
                                            headers=NO_STORE)
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


def middleware() -> list[Middleware]:
    return [Middleware(UploadGuard)]


def use_navigation_only() -> None:
    """Never run Streamlit's legacy ``pages/`` mode: every URL goes through ``app.py``.

    With a ``pages/`` folder beside the script, a freshly started Streamlit runs a deep link's
    page file on its own until some session has called ``st.navigation``; the page guards
    catch that, but the visitor then sees a bare "not signed in" instead of the sign-in form
    (and loses the page asked for). The flag is what ``st.navigation`` itself sets.
    """
    from streamlit.runtime.pages_manager import PagesManager

    PagesManager.uses_pages_directory = False
