#!/usr/bin/env python3
"""Render deploy/nginx/finflow.conf for one installation (standard library only).

Production (TLS on 443, port 80 redirects; goes into Debian's sites-available/):

    python3 deploy/nginx/render.py --server-name finflow.example.com \\
        --tls-cert /etc/ssl/certs/finflow.pem --tls-key /etc/ssl/private/finflow.key \\
        --out /etc/nginx/sites-available/finflow.conf

Plain HTTP (TLS ends somewhere else, or a loopback test), and a complete nginx.conf that
one user can run without root (``nginx -p PREFIX -c PREFIX/nginx.conf -g 'daemon off;'``):

    python3 deploy/nginx/render.py --plain --server-name finflow.test --listen 127.0.0.1:8443 \\
        --upstream 127.0.0.1:8501 --standalone /tmp/ff-nginx --out /tmp/ff-nginx/nginx.conf

The upload limit is read from the app's ``.streamlit/config.toml`` (``server.maxUploadSize``)
unless ``--max-upload-mb`` is given.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE / "finflow.conf"
APP_CONFIG = HERE.parents[1] / ".streamlit" / "config.toml"
STREAMLIT_DEFAULT_UPLOAD_MB = 200  # Streamlit's own default for server.maxUploadSize

_HOST = re.compile(r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$")
_LISTEN = re.compile(r"^(\[[0-9A-Fa-f:]+\]:|[0-9.]+:|[A-Za-z0-9.-]+:)?[0-9]{1,5}$")
_RATE = re.compile(r"^[0-9]+r/[sm]$")
_SAFE_PATH = re.compile(r"^[^\s;{}\"'#$\\]+$")
_PLACEHOLDER = re.compile(r"@[A-Z_]+@")


class RenderError(ValueError):
    pass


def upload_limit_mb(app_config: Path = APP_CONFIG) -> int:
    """``server.maxUploadSize`` (MB) of the app's config file; Streamlit's default if unset."""
    if not app_config.exists():
        return STREAMLIT_DEFAULT_UPLOAD_MB
    value = tomllib.loads(app_config.read_text()).get("server", {}).get("maxUploadSize",
                                                                         STREAMLIT_DEFAULT_UPLOAD_MB)
    if not isinstance(value, int) or value <= 0:
        raise RenderError(f"{app_config}: server.maxUploadSize must be a positive integer, not {value!r}")
    return value


def _check(pattern: re.Pattern[str], value: str, what: str) -> str:
    if not pattern.match(value):
        raise RenderError(f"{what}: {value!r} is not allowed here")
    return value


def _select_lines(text: str, tls: bool) -> str:
    """Keep ``# @tls`` lines only with TLS and ``# @plain`` lines only without; drop the tags."""
    out = []
    for line in text.splitlines():
        tag = re.search(r"\s*#\s*@(tls|plain)\s*$", line)
        if tag:
            if (tag.group(1) == "tls") != tls:
                continue
            line = line[: tag.start()]
        line = line.rstrip()
        if line or (out and out[-1]):  # no runs of blank lines where tagged lines were
            out.append(line)
    return "\n".join(out).rstrip() + "\n"


def render_site(*, server_names: list[str], upstream: str = "127.0.0.1:8501", listen: str | None = None,
                http_listen: str = "80", tls_cert: str | None = None, tls_key: str | None = None,
                access_log: str = "/var/log/nginx/finflow.access.log",
                error_log: str = "/var/log/nginx/finflow.error.log", max_upload_mb: int | None = None,
                upload_rate: str = "6r/m", upload_burst: int = 4, uploads_per_address: int = 2,
                sessions_per_address: int = 20, template: Path = TEMPLATE) -> str:
    """The server blocks for nginx's http {} context (TLS when a certificate is given)."""
    if not server_names:
        raise RenderError("give at least one --server-name")
    tls = tls_cert is not None or tls_key is not None
    if tls and not (tls_cert and tls_key):
        raise RenderError("TLS needs both --tls-cert and --tls-key")
    if int(upload_burst) < 0:
        raise RenderError(f"upload burst must be 0 or more, not {upload_burst}")
    for what, number in (("uploads per address", uploads_per_address),
                         ("sessions per address", sessions_per_address), ("upload limit", max_upload_mb or 1)):
        if int(number) < 1:
            raise RenderError(f"{what} must be at least 1, not {number}")
    values = {
        "SERVER_NAMES": " ".join(_check(_HOST, n, "server name") for n in server_names),
        "UPSTREAM": _check(_LISTEN, upstream, "upstream"),
        "LISTEN": _check(_LISTEN, listen or ("443" if tls else "80"), "listen"),
        "HTTP_LISTEN": _check(_LISTEN, http_listen, "http listen"),
        "ACCESS_LOG": _check(_SAFE_PATH, access_log, "access log"),
        "ERROR_LOG": _check(_SAFE_PATH, error_log, "error log"),
        "MAX_UPLOAD_MB": str(max_upload_mb if max_upload_mb is not None else upload_limit_mb()),
        "UPLOAD_RATE": _check(_RATE, upload_rate, "upload rate"),
        "UPLOAD_BURST": str(int(upload_burst)),
        "UPLOADS_PER_ADDRESS": str(int(uploads_per_address)),
        "SESSIONS_PER_ADDRESS": str(int(sessions_per_address)),
    }
    port = values["LISTEN"].rsplit(":", 1)[-1]
    values["HTTPS_PORT"] = "" if port == "443" else f":{port}"  # for the redirect from port 80
    if tls:
        values["TLS_CERT"] = _check(_SAFE_PATH, str(tls_cert), "TLS certificate")
        values["TLS_KEY"] = _check(_SAFE_PATH, str(tls_key), "TLS key")
    text = (f"# Rendered by deploy/nginx/render.py ({'TLS' if tls else 'plain HTTP'}) from {template.name}: "
            "change the template and render again.\n" + _select_lines(template.read_text(), tls))
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    left = sorted(set(_PLACEHOLDER.findall(text)))
    if left:
        raise RenderError(f"placeholders left unfilled: {', '.join(left)}")
    return text


def render_standalone(site: str, prefix: Path) -> str:
    """A complete nginx.conf around ``site`` whose pid, logs and temp files live in ``prefix``
    (for ``nginx -p PREFIX -c CONF -g 'daemon off;'`` without root, e.g. in a test)."""
    p = str(prefix)
    _check(_SAFE_PATH, p, "prefix")
    # Run by root (a CI container), the workers would drop to "nobody", who cannot enter a
    # private temporary folder: keep them as the invoking user.
    user = "user root;\n" if hasattr(os, "geteuid") and os.geteuid() == 0 else ""
    temp = "\n".join(f"    {kind}_temp_path {p}/temp/{kind};" for kind in
                     ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    site_lines = "\n".join(("    " + line) if line else "" for line in site.splitlines())
    return (f"# Generated by deploy/nginx/render.py --standalone {p}\n{user}"
            f"worker_processes 1;\npid {p}/nginx.pid;\nerror_log {p}/error.log warn;\n"
            f"events {{\n    worker_connections 256;\n}}\n"
            f"http {{\n    include /etc/nginx/mime.types;\n    default_type application/octet-stream;\n"
            f"{temp}\n\n{site_lines}\n}}\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server-name", action="append", required=True, dest="server_names",
                    help="a host name browsers use for FinFlow (repeat for more); any other Host is refused")
    ap.add_argument("--upstream", default="127.0.0.1:8501", help="Streamlit's address (default %(default)s)")
    ap.add_argument("--listen", help="address:port or port for FinFlow (default 443 with TLS, 80 with --plain)")
    ap.add_argument("--http-listen", default="80", help="port that redirects to HTTPS (TLS only; default 80)")
    tls = ap.add_mutually_exclusive_group(required=True)
    tls.add_argument("--tls-cert", help="certificate chain (PEM); --tls-key is then required")
    tls.add_argument("--plain", action="store_true", help="plain HTTP (TLS ends elsewhere, or a loopback test)")
    ap.add_argument("--tls-key", help="private key of the certificate (PEM)")
    ap.add_argument("--access-log", default="/var/log/nginx/finflow.access.log")
    ap.add_argument("--error-log", default="/var/log/nginx/finflow.error.log")
    ap.add_argument("--app-config", type=Path, default=APP_CONFIG,
                    help="the app's Streamlit config, for server.maxUploadSize (default %(default)s)")
    ap.add_argument("--max-upload-mb", type=int, help="override the upload limit (MB)")
    ap.add_argument("--upload-rate", default="6r/m", help="uploads per client address (default %(default)s)")
    ap.add_argument("--upload-burst", type=int, default=4, help="uploads at once before the rate applies")
    ap.add_argument("--uploads-per-address", type=int, default=2, help="concurrent uploads per address")
    ap.add_argument("--sessions-per-address", type=int, default=20, help="open app tabs per address")
    ap.add_argument("--standalone", type=Path, metavar="PREFIX",
                    help="write a complete nginx.conf with pid, logs and temp files under PREFIX")
    ap.add_argument("--out", type=Path, help="write here instead of standard output")
    args = ap.parse_args(argv)
    if args.plain and args.tls_key:
        ap.error("--tls-key makes no sense with --plain")
    try:
        site = render_site(
            server_names=args.server_names, upstream=args.upstream, listen=args.listen,
            http_listen=args.http_listen, tls_cert=args.tls_cert, tls_key=args.tls_key,
            access_log=args.access_log, error_log=args.error_log,
            max_upload_mb=args.max_upload_mb if args.max_upload_mb is not None else upload_limit_mb(args.app_config),
            upload_rate=args.upload_rate, upload_burst=args.upload_burst,
            uploads_per_address=args.uploads_per_address, sessions_per_address=args.sessions_per_address,
        )
        text = render_standalone(site, args.standalone) if args.standalone else site
    except RenderError as exc:
        print(f"render.py: {exc}", file=sys.stderr)
        return 2
    if args.standalone:
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (args.standalone / "temp" / kind).mkdir(parents=True, exist_ok=True)
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
