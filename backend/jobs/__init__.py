"""The jobs: what the backend does for a client or a terminal, one module per job kind.

``check_dataset``, ``reconstruct``, ``extract`` and ``prepare`` each take a config from ``shared/jobs.py``, a job
folder, a ``Reporter`` (``reporting.py``: the server's job context or the CLI's terminal) and a device, and raise
``JobFailed`` (``failure.py``) for a failure the user can act on. The server reaches them through ``kinds.py``;
the CLI's verbs call the same functions.

A new job kind goes here: its module ``<kind>.py`` with the run function, its config in ``shared/jobs.py``, and a
loader for it in ``kinds.py``.
"""
