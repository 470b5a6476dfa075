"""One rank of a reconstruct job on several devices: ``python -m carrara.backend.jobs.reconstruct_rank SPEC``, one
process per device, started by torchrun from ``rank_pool.py``.

Every rank runs the job's own ``run_reconstruction`` on its device (``train/distributed.py`` splits the rays and
averages the gradients); rank 0's reports, and any rank's failure, go to the lines ``rank_reports.py`` reads back.
"""
from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path

from ...shared.jobs import config_from_json
from ..train.distributed import Distributed
from .failure import JobFailed
from .rank_reports import RankReporter
from .reconstruct import run_reconstruction


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    roots = spec["allowed_roots"]
    reporter = RankReporter(Path(spec["reports"]), Path(spec["stop"]), int(os.environ.get("RANK", "0")),
                            None if roots is None else [Path(root) for root in roots], spec["server_pid"])
    try:
        distributed = Distributed.from_env()
        run_reconstruction(config_from_json("reconstruct", spec["config"]), Path(spec["run_dir"]), reporter,
                           spec["device"])
    except JobFailed as exc:
        reporter.failed(str(exc))
        return 1
    except Exception as exc:        # a bug: its traceback goes to the job's log through the worker
        details = traceback.format_exc()
        print(details, file=sys.stderr, flush=True)
        reporter.failed(f"{type(exc).__name__}: {exc}", details)
        return 1
    distributed.close()         # only after success: a failed rank leaves at once, and torchrun ends the others
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
