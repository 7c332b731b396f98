"""One Modal call's container body for :class:`~tests.support.modal_processes.ProcessModal`.

``python -m tests.support.modal_container WORKLOAD KWARGS_JSON OUTCOME_JSON`` runs
:func:`modal_workers.app.run_request` (what the deployed Modal functions and classes call) with the
dispatcher's kwargs and writes the outcome it returns; a process that dies first leaves no outcome.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path


def main(workload: str, kwargs_path: str, outcome_path: str) -> None:
    """Run the call; its outcome to ``outcome_path`` (written whole, then renamed)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # modal's import-time deprecation notes
        from modal_workers.app import run_request

    kwargs = json.loads(Path(kwargs_path).read_text())
    outcome = run_request(workload, kwargs["request"], kwargs["ingest"], kwargs["storage"])
    partial = Path(outcome_path + ".part")
    partial.write_text(json.dumps(outcome))
    partial.replace(outcome_path)


if __name__ == "__main__":
    main(*sys.argv[1:4])
