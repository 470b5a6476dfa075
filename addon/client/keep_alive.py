"""The connection kept alive: opened with the preferences, reopened at a limited rate, a local backend started or
restarted when the preferences say so, and what the backend said of itself shown in ``BackendStatusProperties``."""
from __future__ import annotations

import time

import bpy

from ..preferences import ROOT_PACKAGE, BackendSettings, backend_settings
from ..properties.runs import BackendStatusProperties
from .backend_process import is_local_address, something_listens
from .connection import Connection, ConnectionState, NotConnectedError, load_curve_keys
from .runs import abandon_unanswered_submits, followed_job_ids
from .runtime import runtime, set_if_changed

RECONNECT_INTERVAL_S = 2.0
INCOMPATIBLE_RETRY_S = 30.0


def backend_status() -> BackendStatusProperties:
    return bpy.context.window_manager.carrara_backend


def connect(context: bpy.types.Context | None = None) -> Connection:
    """Connect (or reconnect now) with the current preferences; the pump keeps it alive from then on."""
    state = runtime()
    state.wanted = True
    state.last_open = -1e9
    drop_connection()
    abandon_unanswered_submits()
    maintain_connection(backend_settings(context), backend_status(), time.monotonic(), by_hand=True)
    if state.connection is None:
        raise NotConnectedError(backend_status().problem)
    show_connection(backend_status(), state.connection)
    return state.connection


def start_local_backend(context: bpy.types.Context | None = None) -> None:
    """Start the local backend by hand (lifting the restart limit); errors name what to fix."""
    settings, state = backend_settings(context), runtime()
    state.wanted = True
    state.local.start(settings.address, settings.workspace, settings.python, by_hand=True)
    backend_status().local_backend = state.local.note
    state.last_open = -1e9


def ensure_connected(context: bpy.types.Context) -> None:
    """Connect now unless a connection is open or opening (an operator about to submit)."""
    connection = runtime().connection
    if connection is None or connection.state not in (ConnectionState.CONNECTING, ConnectionState.CONNECTED):
        connect(context)


def current_connection() -> Connection:
    """The open (or opening) connection; NotConnectedError saying what to do otherwise."""
    connection = runtime().connection
    if connection is None or connection.state not in (ConnectionState.CONNECTING, ConnectionState.CONNECTED):
        raise NotConnectedError(f"not connected to the backend: {backend_status().problem or 'press Connect'}")
    return connection


def maintain_connection(settings: BackendSettings, status: BackendStatusProperties, now: float, *,
                        by_hand: bool = False, backend_died: bool = False) -> None:
    state = runtime()
    connection = state.connection
    key = (settings.address, settings.server_public_key, settings.client_keys)
    if connection is not None and key != state.connection_key:
        drop_connection()            # the preferences changed
        connection = None
    alive = connection is not None and connection.state in (ConnectionState.CONNECTING, ConnectionState.CONNECTED)
    if alive and not backend_died:
        return
    wait = INCOMPATIBLE_RETRY_S if connection and connection.state == ConnectionState.INCOMPATIBLE \
        else RECONNECT_INTERVAL_S
    if now - state.last_open < wait and not backend_died:
        return
    state.last_open = now
    if settings.auto_start and is_local_address(settings.address) and not state.local.running and \
            not something_listens(settings.address):
        try:
            state.local.start(settings.address, settings.workspace, settings.python, by_hand=by_hand)
        except (OSError, ValueError, RuntimeError) as exc:
            status.local_backend = str(exc)
        else:
            status.local_backend = state.local.note
    if connection is None:
        try:
            curve = load_curve_keys(settings.server_public_key, settings.client_keys)
        except (OSError, ValueError) as exc:
            status.state, status.problem = ConnectionState.CLOSED, f"the key settings are unusable: {exc}"
            return
        connection = Connection(settings.address, curve, client_name=f"{ROOT_PACKAGE} in Blender "
                                                                     f"{bpy.app.version_string}")
        state.connection, state.connection_key = connection, key
        for job_id in followed_job_ids():
            connection.attach(job_id)
    connection.open()
    state.dirty = True


def drop_connection() -> None:
    state = runtime()
    if state.connection is not None:
        state.connection.close()
    state.connection = None


def follow_file_jobs() -> None:
    """A .blend was opened: stop hearing about the jobs of the file before, follow this one's."""
    connection = runtime().connection
    if connection is None:
        return
    for job_id in connection.followed_jobs - set(followed_job_ids()):
        connection.detach(job_id)
    for job_id in followed_job_ids():
        connection.attach(job_id)


def show_connection(status: BackendStatusProperties, connection: Connection | None) -> None:
    if connection is None:
        return
    set_if_changed(status, "state", connection.state)
    set_if_changed(status, "problem", connection.problem)
    set_if_changed(status, "address", connection.address)
    local = runtime().local
    if local.running:
        set_if_changed(status, "local_backend", local.note)
    welcome = connection.welcome
    if not welcome:
        return
    caps = connection.capabilities
    set_if_changed(status, "server_version", str(welcome.get("server_version", "")))
    set_if_changed(status, "job_kinds", ", ".join(welcome.get("job_kinds") or ()))
    set_if_changed(status, "device", str(caps.get("device") or ""))
    set_if_changed(status, "gpu_name", str(caps.get("gpu_name") or ""))
    set_if_changed(status, "gpu_memory_gb", round((caps.get("gpu_memory_bytes") or 0) / 1e9, 1))
    set_if_changed(status, "torch_version", str(caps.get("torch") or caps.get("torch_error") or ""))
    set_if_changed(status, "cuda_version", str(caps.get("cuda") or ""))
    set_if_changed(status, "tinycudann", bool(caps.get("tinycudann")))
