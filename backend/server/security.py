"""CURVE keys: nobody on the network drives a backend by accident.

``make_keys(dir)`` writes (``carrara-backend keys``)::

    dir/server.key            the server's public key: give it to every client
    dir/server.key_secret     the server's key pair: stays on the GPU machine
    dir/client.key            a client's public key
    dir/client.key_secret     a client's key pair: copy it to the artist's machine
    dir/authorized_clients/   public keys of the clients the server lets in (client.key is put there)

A server bound beyond loopback must have keys; with keys, ZAP (``ThreadAuthenticator``) admits only clients whose
public key lies in ``authorized_clients``, and a client with any other key gets no answer at all. The folder is
read again whenever it changes, so adding or revoking a client needs no restart (a revoked client's open
connection lasts until it drops; CURVE checks keys when a connection is made).
"""
from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from urllib.parse import urlsplit

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

AUTHORIZED_FOLDER = "authorized_clients"


def _write_private(path: Path, text: str, mode: int) -> None:
    """Create ``path`` with ``mode`` from its first byte (never world-readable for a moment), then fill it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def _certificate(public: bytes, secret: bytes | None) -> str:
    """The ZPL text ``zmq.auth.load_certificate`` reads."""
    lines = ["#   ZeroMQ CURVE " + ("**Secret** Certificate: keep it private" if secret else "Public Certificate"),
             "", "metadata", "curve", f'    public-key = "{public.decode("ascii")}"']
    if secret:
        lines.append(f'    secret-key = "{secret.decode("ascii")}"')
    return "\n".join(lines) + "\n"


def make_keys(directory: Path) -> list[Path]:
    """Create the server and client key pairs that are missing (existing keys are kept, never replaced): the
    folders are 0700 and secret files 0600 from the moment they exist."""
    directory = Path(directory)
    authorized = directory / AUTHORIZED_FOLDER
    for folder in (directory, authorized):
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder.chmod(0o700)
    paths = []
    for name in ("server", "client"):
        public, secret = directory / f"{name}.key", directory / f"{name}.key_secret"
        if not (public.exists() and secret.exists()):
            public.unlink(missing_ok=True)
            secret.unlink(missing_ok=True)
            public_key, secret_key = zmq.curve_keypair()
            _write_private(secret, _certificate(public_key, secret_key), 0o600)
            _write_private(public, _certificate(public_key, None), 0o644)
        paths += [public, secret]
    client_copy = authorized / "client.key"
    if not client_copy.exists():
        _write_private(client_copy, (directory / "client.key").read_text(encoding="utf-8"), 0o644)
    return [*paths, client_copy]


def is_loopback(endpoint: str) -> bool:
    """True for endpoints only this machine can reach: a loopback IP address, localhost, ipc:// and inproc://.
    The host is parsed, never compared as text ('127.evil.example' is a name anyone may own)."""
    scheme, _, rest = endpoint.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    if scheme != "tcp" or ";" in rest:        # 'tcp://eth0;127.0.0.1:1' names a source interface
        return False
    try:
        host = urlsplit(f"//{rest}").hostname or ""
    except ValueError:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(endpoint: str, keys_dir: Path | None) -> None:
    """Refuse to listen beyond loopback without keys; ValueError says what to do."""
    if keys_dir is None and not is_loopback(endpoint):
        raise ValueError(f"refusing to bind {endpoint} without keys: anyone on the network could drive this "
                         "backend. Run 'carrara-backend keys DIR' and pass --keys DIR, or bind tcp://127.0.0.1:PORT")


def load_server_keys(keys_dir: Path) -> tuple[bytes, bytes]:
    """The server's (public, secret) keys; ValueError naming the file when they are missing."""
    path = Path(keys_dir) / "server.key_secret"
    if not path.is_file():
        raise ValueError(f"{path} is missing; run 'carrara-backend keys {keys_dir}' first")
    public, secret = zmq.auth.load_certificate(path)
    if not secret:
        raise ValueError(f"{path} holds no secret key")
    if not (Path(keys_dir) / AUTHORIZED_FOLDER).is_dir():
        raise ValueError(f"{Path(keys_dir) / AUTHORIZED_FOLDER} is missing: put the public keys of the clients "
                         "to admit there")
    return public, secret


def secure_socket(context: zmq.Context, socket: zmq.Socket, keys_dir: Path) -> ThreadAuthenticator:
    """Make ``socket`` a CURVE server admitting only the authorized clients; returns the running authenticator."""
    public, secret = load_server_keys(keys_dir)
    authenticator = ThreadAuthenticator(context)
    authenticator.start()
    authenticator.configure_curve(domain="*", location=str(Path(keys_dir) / AUTHORIZED_FOLDER))
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_server = True
    return authenticator


class AuthorizedKeys:
    """Reloads ``authorized_clients`` into the authenticator when its files change (the server loop asks)."""

    def __init__(self, authenticator: ThreadAuthenticator, keys_dir: Path):
        self.authenticator = authenticator
        self.folder = Path(keys_dir) / AUTHORIZED_FOLDER
        self._seen = self._signature()

    def _signature(self) -> tuple:
        try:
            return tuple(sorted((entry.name, entry.stat().st_mtime_ns, entry.stat().st_size)
                                for entry in os.scandir(self.folder)))
        except OSError:
            return ()

    def reload_if_changed(self) -> bool:
        """Read the folder again if a key was added, changed or removed; True when it did."""
        signature = self._signature()
        if signature == self._seen:
            return False
        self._seen = signature
        self.authenticator.configure_curve(domain="*", location=str(self.folder))
        return True
