"""Helpers of the proxy tests: render deploy/nginx/finflow.conf, run nginx as a child process
without a daemon, and speak raw HTTP/WebSocket to it (any Host, any source address)."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from app_support import ROOT

RENDER = ROOT / "deploy" / "nginx" / "render.py"
SERVER_NAME = "finflow.test"


def nginx_binary() -> str | None:
    """Debian installs nginx in /usr/sbin, which is not on an ordinary user's PATH."""
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)


@dataclass
class Nginx:
    port: int
    prefix: Path
    conf: Path
    process: subprocess.Popen[bytes]
    http_port: int | None = None  # the HTTP port that redirects to HTTPS (TLS only)

    @property
    def access_log(self) -> Path:
        return self.prefix / "access.log"

    def logs(self) -> str:
        parts = []
        for name in ("nginx.out", "error.log"):
            path = self.prefix / name
            if path.exists():
                parts.append(f"--- {name}\n{path.read_text()[-2000:]}")
        return "\n".join(parts)


def render(prefix: Path, upstream: str, port: int, *extra: str) -> Path:
    """Run deploy/nginx/render.py --standalone, as an operator would; returns nginx.conf."""
    conf = prefix / "nginx.conf"
    cmd = [sys.executable, str(RENDER), "--server-name", SERVER_NAME, "--upstream", upstream,
           "--listen", f"127.0.0.1:{port}", "--standalone", str(prefix),
           "--access-log", str(prefix / "access.log"), "--error-log", str(prefix / "error.log"),
           "--out", str(conf), *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"render.py failed: {done.stderr}"
    return conf


def start_nginx(binary: str, prefix: Path, conf: Path, port: int, http_port: int | None = None) -> Nginx:
    out = open(prefix / "nginx.out", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([binary, "-p", str(prefix), "-c", str(conf), "-e", "stderr", "-g", "daemon off;"],
                            stdout=out, stderr=subprocess.STDOUT)
    ngx = Nginx(port, prefix, conf, proc, http_port)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited with {proc.returncode}:\n{ngx.logs()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return ngx
        except OSError:
            time.sleep(0.05)
    stop_nginx(ngx)
    raise RuntimeError(f"nginx did not listen on {port} within 10 s:\n{ngx.logs()}")


def stop_nginx(ngx: Nginx) -> None:
    """SIGTERM to the master (by its process id): a fast shutdown that ends the workers too."""
    if ngx.process.poll() is None:
        ngx.process.terminate()
        try:
            ngx.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            ngx.process.kill()
            ngx.process.wait(timeout=10)


@dataclass
class Response:
    status: int
    headers: dict[str, list[str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None


def _connect(port: int, source: str, tls_name: str | None, ca: Path | None, timeout: float) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
    if tls_name is None:
        return sock
    ctx = ssl.create_default_context(cafile=str(ca) if ca else None)
    return ctx.wrap_socket(sock, server_hostname=tls_name)


def request(port: int, path: str = "/", *, host: str | None = SERVER_NAME, method: str = "GET",
            headers: dict[str, str] | None = None, body: bytes = b"", source: str = "127.0.0.1",
            tls_name: str | None = None, ca: Path | None = None, timeout: float = 10,
            read_body: bool = True) -> Response | None:
    """One HTTP/1.1 request with exactly the Host given (None: no Host header at all, as
    HTTP/1.0). Returns None when the server closes the connection without an answer (444)."""
    sock = _connect(port, source, tls_name, ca, timeout)
    try:
        version = "HTTP/1.1" if host is not None else "HTTP/1.0"
        lines = [f"{method} {path} {version}"]
        if host is not None:
            lines.append(f"Host: {host}")
        lines.append("Connection: close")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        data = b""
        while b"\r\n\r\n" not in data:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                if not data:
                    return None
                raise AssertionError(f"incomplete response: {data!r}")
            data += chunk
        head, rest = data.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        parsed: dict[str, list[str]] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            parsed.setdefault(name.strip().lower(), []).append(value.strip())
        if read_body:
            length = parsed.get("content-length")
            while True:
                if length is not None and len(rest) >= int(length[0]):
                    break
                chunk = sock.recv(65536)
                if not chunk:
                    break
                rest += chunk
        return Response(int(status_line.split()[1]), parsed, rest)
    finally:
        sock.close()


def websocket_handshake(port: int, *, host: str, origin: str, path: str = "/_stcore/stream",
                        timeout: float = 10) -> str | None:
    """The status line of a WebSocket upgrade as a browser on ``origin`` sends it, or None
    when the connection is closed without an answer."""
    key = base64.b64encode(os.urandom(16)).decode()
    response = request(port, path, host=host, timeout=timeout, read_body=False, headers={
        "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": key,
        "Sec-WebSocket-Version": "13", "Sec-WebSocket-Protocol": "streamlit", "Origin": origin})
    return None if response is None else f"{response.status}"


def waits_for_body(port: int, path: str, length: int, *, source: str, wait: float = 0.5) -> bool:
    """True when the server, told ``length`` bytes are coming, waits for them instead of
    answering at once (nginx answers 413 at once when the length is over its limit)."""
    sock = _connect(port, source, None, None, wait)
    try:
        sock.sendall(f"PUT {path} HTTP/1.1\r\nHost: {SERVER_NAME}\r\nContent-Length: {length}\r\n"
                     f"Content-Type: application/octet-stream\r\n\r\n".encode())
        try:
            sock.recv(1024)  # an answer, or the connection closed
            return False
        except TimeoutError:
            return True
    finally:
        sock.close()


def self_signed_certificate(folder: Path, name: str) -> tuple[Path, Path]:
    """A certificate for ``name`` from Debian's openssl command (no Python package needed)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
                    "-addext", f"subjectAltName=DNS:{name}"], check=True, capture_output=True, timeout=30)
    return cert, key
