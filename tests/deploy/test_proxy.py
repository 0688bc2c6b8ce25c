"""nginx in front of the app, as docs/DEPLOY.md sets it up: security headers, the Host
allow-list (also on the WebSocket), upload limits, and a strict CSP under which the real
frontend renders in Chromium with no violation."""

from __future__ import annotations

import base64
import hashlib
import re
import ssl
import time
import tomllib

import pytest
from app_support import ROOT
from e2e.e2e_support import CHROMIUM, CHROMIUM_FLAGS, IDLE, Server
from playwright.sync_api import BrowserType, expect
from proxy_support import SERVER_NAME, Nginx, request, waits_for_body, websocket_handshake

pytestmark = pytest.mark.deploy

HEADERS = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cross-origin-resource-policy": "same-origin",
}
#: What a CSP source may be: this origin, nothing, or a non-network scheme; never a host.
ALLOWED_SOURCES = {"'self'", "'none'", "'unsafe-inline'", "'wasm-unsafe-eval'", "data:", "blob:"}
#: Features no FinFlow screen uses: the browser refuses them to the page and to anything in it.
DENIED_FEATURES = ("camera", "microphone", "geolocation", "payment", "usb", "display-capture")
UPLOAD = "/_stcore/upload_file/some-session/some-file"


def app_upload_limit_mb() -> int:
    return int(tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())["server"]["maxUploadSize"])


def csp_of(response) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    policy = response.header("content-security-policy")
    assert policy, "no Content-Security-Policy header"
    directives: dict[str, list[str]] = {}
    for part in policy.split(";"):
        name, *sources = part.split()
        directives[name] = sources
    return directives


def host(ngx: Nginx) -> str:
    return f"{SERVER_NAME}:{ngx.port}"


def assert_security_headers(response, where: str) -> None:  # type: ignore[no-untyped-def]
    for name, value in HEADERS.items():
        assert response.header(name) == value, f"{where}: {name} is {response.header(name)!r}"
    csp = csp_of(response)
    assert csp["default-src"] == ["'self'"], where
    for name, value in (("frame-ancestors", ["'none'"]), ("object-src", ["'none'"]), ("base-uri", ["'self'"]),
                        ("form-action", ["'self'"])):
        assert csp.get(name) == value, f"{where}: {name} is {csp.get(name)}"
    for name, sources in csp.items():
        for source in sources:
            assert source in ALLOWED_SOURCES or source.startswith("'sha256-"), f"{where}: {name} allows {source}"
    policy = response.header("permissions-policy") or ""
    for feature in DENIED_FEATURES:
        assert f"{feature}=()" in policy, f"{where}: Permissions-Policy does not deny {feature}"
    assert response.header("server") == "nginx", "server_tokens off: no version"


def test_security_headers_on_the_page_a_static_asset_and_an_error(proxy: Nginx) -> None:
    page = request(proxy.port, "/", host=host(proxy))
    assert page is not None and page.status == 200
    assert_security_headers(page, "/")
    # a script of the frontend, named in index.html
    asset = re.search(rb'src="\./(static/js/[^"]+\.js)"', page.body)
    assert asset, page.body[:2000]
    script = request(proxy.port, "/" + asset.group(1).decode(), host=host(proxy))
    assert script is not None and script.status == 200
    assert "javascript" in (script.header("content-type") or "")
    assert_security_headers(script, asset.group(1).decode())
    # an error answer from the app, and one from nginx itself
    for path in ("/media/no-such-file.png", "/_stcore/metrics"):
        missing = request(proxy.port, path, host=host(proxy))
        assert missing is not None and missing.status == 404, path
        assert_security_headers(missing, f"the 404 of {path}")
    assert request(proxy.port, "/", host=host(proxy)).header("strict-transport-security") is None  # plain HTTP


def test_the_csp_allows_exactly_the_inline_script_of_this_streamlit(proxy: Nginx) -> None:
    """The hash in script-src is of Streamlit's index.html: a Streamlit upgrade that changes
    it fails here with the value to put in deploy/nginx/finflow.conf."""
    page = request(proxy.port, "/", host=host(proxy))
    assert page is not None
    inline = re.findall(rb"<script>(.*?)</script>", page.body, flags=re.S)
    wanted = {f"'sha256-{base64.b64encode(hashlib.sha256(s).digest()).decode()}'" for s in inline}
    allowed = {s for s in csp_of(page)["script-src"] if s.startswith("'sha256-")}
    assert wanted == allowed, (f"index.html's inline scripts hash to {sorted(wanted)}; the CSP in "
                               f"deploy/nginx/finflow.conf allows {sorted(allowed)}")


def test_health_answers_through_the_proxy(proxy: Nginx) -> None:
    health = request(proxy.port, "/_stcore/health", host=host(proxy))
    assert health is not None and health.status == 200 and health.body.strip() == b"ok"
    assert_security_headers(health, "/_stcore/health")


@pytest.mark.parametrize("foreign", ["evil.example", "evil.example:{port}", "127.0.0.1:{port}", "localhost", None])
def test_a_foreign_host_gets_no_answer(proxy: Nginx, foreign: str | None) -> None:
    name = None if foreign is None else foreign.format(port=proxy.port)
    assert request(proxy.port, "/", host=name) is None
    assert request(proxy.port, "/_stcore/health", host=name) is None


def test_a_websocket_with_a_foreign_host_and_matching_origin_is_refused(proxy: Nginx, app: Server) -> None:
    """A DNS-rebinding page on evil.example sends Host and Origin that match each other."""
    evil = f"evil.example:{proxy.port}"
    assert websocket_handshake(proxy.port, host=evil, origin=f"http://{evil}") is None
    ip = f"127.0.0.1:{proxy.port}"
    assert websocket_handshake(proxy.port, host=ip, origin=f"http://{ip}") is None
    # the app's own name is let through, and the app agrees with the Origin nginx passes on
    assert websocket_handshake(proxy.port, host=host(proxy), origin=f"http://{host(proxy)}") == "101"
    # ... and another site's page, using the right Host, is still refused by Streamlit
    assert websocket_handshake(proxy.port, host=host(proxy), origin="http://evil.example") == "403"


def test_metrics_and_agent_api_are_not_served(proxy: Nginx) -> None:
    for path in ("/_stcore/metrics", "/_stcore/agent/openapi.json"):
        response = request(proxy.port, path, host=host(proxy))
        assert response is not None and response.status == 404, path


def test_access_log_has_no_query_string(proxy: Nginx) -> None:
    assert request(proxy.port, "/?token=s3cr3t-in-the-url", host=host(proxy)) is not None
    log = proxy.access_log.read_text()
    assert '"GET / HTTP/1.1" 200' in log
    assert "s3cr3t" not in log


def test_an_upload_over_the_apps_limit_gets_413_from_nginx(proxy: Nginx) -> None:
    limit = app_upload_limit_mb()
    assert f"client_max_body_size {limit}m;" in proxy.conf.read_text()
    over = request(proxy.port, UPLOAD, host=host(proxy), method="PUT", source="127.0.0.2", read_body=False,
                   headers={"Content-Length": str(limit * 1024 * 1024 + 1),
                            "Content-Type": "application/octet-stream"})
    assert over is not None and over.status == 413
    assert_security_headers(over, "the 413")
    # at exactly the app's limit nginx waits for the body (the app checks it then)
    assert waits_for_body(proxy.port, UPLOAD, limit * 1024 * 1024, source="127.0.0.3")
    # everything else takes no large body at all
    other = request(proxy.port, "/", host=host(proxy), method="POST", source="127.0.0.2", read_body=False,
                    headers={"Content-Length": str(2 * 1024 * 1024)})
    assert other is not None and other.status == 413


def test_uploads_are_rate_limited_per_client_address(proxy: Nginx) -> None:
    """The first upload and a burst of 4 reach the app (which refuses them: no XSRF token),
    the next one from the same address is refused by nginx; another address is not affected."""
    def put(source: str) -> int:
        response = request(proxy.port, UPLOAD, host=host(proxy), method="PUT", body=b"abc", source=source,
                           headers={"Content-Length": "3", "Content-Type": "application/octet-stream"})
        assert response is not None
        return response.status

    statuses = [put("127.0.0.4") for _ in range(6)]
    assert 429 not in statuses[:5] and statuses[5] == 429, statuses
    assert put("127.0.0.5") != 429
    # only uploads count: the page still loads from the limited address
    page = request(proxy.port, "/", host=host(proxy), source="127.0.0.4")
    assert page is not None and page.status == 200


def test_tls_adds_hsts_and_redirects_plain_http(tls_proxy: Nginx) -> None:
    ca = tls_proxy.prefix / "cert.pem"
    health = request(tls_proxy.port, "/_stcore/health", host=host(tls_proxy), tls_name=SERVER_NAME, ca=ca)
    assert health is not None and health.status == 200
    assert_security_headers(health, "HTTPS")
    assert (health.header("strict-transport-security") or "").startswith("max-age=")
    assert health.header("cross-origin-opener-policy") == "same-origin"
    cookies = health.headers.get("set-cookie", [])
    assert cookies and all("secure" in c.lower() for c in cookies), cookies  # the XSRF cookie
    # a foreign Host inside a good TLS connection, and a foreign name in the handshake itself
    assert request(tls_proxy.port, "/", host="evil.example", tls_name=SERVER_NAME, ca=ca) is None
    with pytest.raises(ssl.SSLError):
        request(tls_proxy.port, "/", host="evil.example", tls_name="evil.example", ca=ca)
    # port 80's role: the server name is sent to HTTPS, anything else gets nothing
    assert tls_proxy.http_port is not None
    moved = request(tls_proxy.http_port, "/setup?x=1", host=SERVER_NAME)
    assert moved is not None and moved.status == 301
    assert moved.header("location") == f"https://{SERVER_NAME}:{tls_proxy.port}/setup?x=1"
    assert request(tls_proxy.http_port, "/", host="evil.example") is None


@pytest.mark.browser
def test_the_set_up_screen_renders_through_the_proxy_with_no_csp_violation(proxy: Nginx,
                                                                           browser_type: BrowserType) -> None:
    browser = browser_type.launch(executable_path=str(CHROMIUM), args=[
        *CHROMIUM_FLAGS, f"--host-resolver-rules=MAP {SERVER_NAME} 127.0.0.1"])
    try:
        page = browser.new_page()
        # Playwright's init scripts are not subject to the page's CSP
        page.add_init_script("window.__csp = []; document.addEventListener('securitypolicyviolation', e => "
                             "window.__csp.push(`${e.violatedDirective} ${e.blockedURI} (${e.sourceFile})`))")
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        origin = f"http://{host(proxy)}"
        foreign: list[str] = []
        page.on("request", lambda r: foreign.append(r.url) if not r.url.startswith(origin + "/") else None)
        started = time.monotonic()
        page.goto(origin + "/")
        expect(page.get_by_role("heading", name="Set up FinFlow")).to_be_visible(timeout=30_000)
        page.wait_for_selector(IDLE, timeout=30_000)  # the WebSocket through nginx works
        expect(page.get_by_role("button", name="Create administrator")).to_be_visible()
        page.wait_for_timeout(500)  # the favicon and late fonts
        violations = page.evaluate("window.__csp")
        assert not violations, (
            f"CSP violations: {violations}. A favicon from fonts.gstatic.com means app.py's page_icon is a "
            ":material/...: icon, which Streamlit fetches from Google; use a local image file instead.")
        assert not errors, errors
        assert not foreign, f"requests to other origins: {foreign}"
        assert time.monotonic() - started < 30
    finally:
        browser.close()
