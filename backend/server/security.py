"""CURVE keys: nobody on the network drives a backend by accident.

``make_keys(dir)`` writes (``carrara-backend keys``)::

    dir/server.key            the server's public key: give it to every client
    dir/server.key_secret     the server's key pair: stays on the GPU machine
    dir/client.key            a client's public key
    dir/client.key_secret     a client's key pair: copy it to the artist's machine
    dir/authorized_clients/   public keys of the clients the server lets in (client.key is put there)

A server bound beyond loopback must have keys; with keys, ZAP (``ThreadAuthenticator``) admits only clients whose
public key lies in ``authorized_clients``, and a client with any other key gets no answer at all.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlsplit

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

AUTHORIZED_FOLDER = "authorized_clients"


def make_keys(directory: Path) -> list[Path]:
    """Create the server and client key pairs that are missing (existing keys are kept, never replaced)."""
    directory = Path(directory)
    authorized = directory / AUTHORIZED_FOLDER
    authorized.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in ("server", "client"):
        public, secret = directory / f"{name}.key", directory / f"{name}.key_secret"
        if not (public.exists() and secret.exists()):
            zmq.auth.create_certificates(directory, name)
        paths += [public, secret]
    client_copy = authorized / "client.key"
    if not client_copy.exists():
        shutil.copyfile(directory / "client.key", client_copy)
    for path in paths:
        if path.name.endswith("_secret"):
            path.chmod(0o600)
    return [*paths, client_copy]


def is_loopback(endpoint: str) -> bool:
    """True for endpoints only this machine can reach: 127.x, ::1, localhost, ipc:// and inproc://."""
    scheme, _, rest = endpoint.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    if scheme != "tcp":
        return False
    host = urlsplit(f"//{rest}").hostname or ""
    return host == "localhost" or host == "::1" or host.startswith("127.")


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
