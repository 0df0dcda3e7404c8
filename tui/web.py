"""``--web``: the same inspector (or lesson) in a browser, for a classroom's projector,
served by textual-serve (the optional ``web`` extra: pip install 'prefix-tui[web]').

textual-serve starts the command once per browser connection, with Textual's web driver,
and relays its screen and keys over a websocket. The command is this prefix-tui with the
same arguments minus the web flags, so each browser tab gets its own replay. It listens on
localhost unless ``--host`` widens it, which is said on stderr: anyone who can reach the
port then starts replays on this machine and sees the trace.
"""

from __future__ import annotations

import ipaddress
import shlex
import socket
import sys

from engine.errors import UserError

LOCAL_HOSTS = ("localhost",)
WEB_FLAGS = {"--web": 0, "--port": 1, "--host": 1}  # flag -> values it takes


def without_web_flags(argv: list[str]) -> list[str]:
    """``argv`` less --web, --port N and --host H (also as --port=N)."""
    out: list[str] = []
    skip = 0
    for arg in argv:
        if skip:
            skip -= 1
            continue
        name = arg.split("=", 1)[0]
        if name in WEB_FLAGS:
            skip = WEB_FLAGS[name] if "=" not in arg else 0
            continue
        out.append(arg)
    return out


def is_local(host: str) -> bool:
    if host in LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def public_url(host: str, port: int) -> str:
    """The address browsers use (a wildcard listen address is no address to connect to)."""
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def serve(argv: list[str], host: str, port: int, title: str) -> int:
    """Serve ``prefix-tui ARGV`` (without the web flags) until Ctrl-C."""
    if not 1 <= port <= 65535:
        raise UserError(f"--port {port}: a port is 1..65535")
    try:
        from textual_serve.server import Server
    except ImportError:
        raise UserError("--web needs textual-serve: pip install 'prefix-tui[web]' "
                        "(or pip install textual-serve)") from None
    if not is_local(host):
        print(f"prefix-tui: warning: --host {host} serves the inspector beyond this machine: "
              f"anyone who can reach port {port} starts replays here and sees the trace",
              file=sys.stderr)
    command = shlex.join([sys.executable, "-m", "tui", *without_web_flags(argv)])
    url = public_url(host, port)
    server = Server(command, host=host, port=port, title=title, public_url=url)
    print(f"prefix-tui: serving on {url} (Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        server.serve()
    except OSError as err:
        raise UserError(f"--web: cannot listen on {host}:{port}: {err.strerror or err}") from None
    return 0
