"""Proxy tests: Debian's nginx, configured from deploy/nginx/finflow.conf, in front of the real
app (``streamlit run app.py`` on a free loopback port, a fresh FINFLOW_HOME: the set-up screen).

nginx runs as a child process without root (``nginx -p PREFIX -c CONF -g 'daemon off;'``,
pid, logs and temp files in a temporary prefix) and is stopped by its process id. The tests
are marked ``deploy``; they skip when nginx is missing unless FINFLOW_REQUIRE_NGINX=1 (CI).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from app_support import ROOT, SECRET
from e2e.e2e_support import CHROMIUM, Server, free_port, start_server, stop_server
from proxy_support import (
    SERVER_NAME,
    Nginx,
    nginx_binary,
    render,
    self_signed_certificate,
    start_nginx,
    stop_nginx,
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    deploy = [item for item in items if "deploy" in item.keywords]
    if deploy and nginx_binary() is None:
        if os.environ.get("FINFLOW_REQUIRE_NGINX") == "1":
            raise pytest.UsageError("FINFLOW_REQUIRE_NGINX=1 but nginx is missing: apt-get install nginx")
        skip = pytest.mark.skip(reason="nginx is missing (apt-get install nginx); "
                                       "set FINFLOW_REQUIRE_NGINX=1 to make this a failure")
        for item in deploy:
            item.add_marker(skip)
    # tests/e2e/conftest.py does the same for every browser test, but only when it is loaded
    browser = [item for item in deploy if "browser" in item.keywords]
    if browser and not CHROMIUM.exists():
        if os.environ.get("FINFLOW_REQUIRE_BROWSER") == "1":
            raise pytest.UsageError(f"FINFLOW_REQUIRE_BROWSER=1 but {CHROMIUM} is missing: apt-get install chromium")
        skip = pytest.mark.skip(reason=f"{CHROMIUM} is missing (apt-get install chromium)")
        for item in browser:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The app on 127.0.0.1 with an empty FINFLOW_HOME (no users yet: the set-up screen)."""
    home = tmp_path_factory.mktemp("finflow_proxy_home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINFLOW_")}
    env.update({"FINFLOW_HOME": str(home), "FINFLOW_SECRET_KEY": SECRET, "PYTHONPATH": str(ROOT)})
    srv = start_server(env, home.parent / f"{home.name}-streamlit.log")
    yield srv
    stop_server(srv.process)


@pytest.fixture(scope="module")
def proxy(app: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    """nginx over plain HTTP on a free loopback port, for the server name finflow.test."""
    prefix = tmp_path_factory.mktemp("nginx_plain")
    port = free_port()
    conf = render(prefix, app.url.removeprefix("http://"), port, "--plain")
    ngx = start_nginx(_binary(), prefix, conf, port)
    yield ngx
    stop_nginx(ngx)


@pytest.fixture(scope="module")
def tls_proxy(app: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    """The production variant: HTTPS (a self-signed certificate for finflow.test) and a port
    that redirects HTTP to it."""
    if shutil.which("openssl") is None:
        if os.environ.get("FINFLOW_REQUIRE_NGINX") == "1":
            pytest.fail("FINFLOW_REQUIRE_NGINX=1 but openssl is missing: apt-get install openssl")
        pytest.skip("openssl is missing: cannot make a test certificate")
    prefix = tmp_path_factory.mktemp("nginx_tls")
    cert, key = self_signed_certificate(prefix, SERVER_NAME)
    port, http_port = free_port(), free_port()
    conf = render(prefix, app.url.removeprefix("http://"), port, "--tls-cert", str(cert), "--tls-key", str(key),
                  "--http-listen", f"127.0.0.1:{http_port}")
    ngx = start_nginx(_binary(), prefix, conf, port, http_port)
    yield ngx
    stop_nginx(ngx)


def _binary() -> str:
    binary = nginx_binary()
    assert binary is not None  # collection skipped the tests otherwise
    return binary
