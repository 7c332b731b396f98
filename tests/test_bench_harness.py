"""The bench harness's service handle: what a failed check shows of a child's log."""

from __future__ import annotations

import json
from pathlib import Path

from bench.harness.service_processes import ServiceProcess


def test_the_log_excerpt_keeps_warnings_and_errors_of_console_and_json_logs(tmp_path: Path) -> None:
    log = tmp_path / "dispatcher.log"
    lines = [
        "dispatcher ready",
        "01:07:31 INFO  services.dispatcher.service: dispatcher started",
        "01:07:32 WARNING services.common.observability.stop_clock: dispatcher took 9.8 s to stop: tasks 9.1 s",
        "01:07:33 ERROR services.dispatcher.fold.partition: dispatcher-fold-3: a batch failed",
        json.dumps({"level": "INFO", "message": "quiet"}),
        json.dumps({"level": "WARNING", "message": "NATS connection lost; reconnecting"}),
    ]
    log.write_text("\n".join(lines) + "\n")
    excerpt = ServiceProcess("dispatcher", {}, log).log_excerpt()
    assert excerpt.splitlines() == ["dispatcher, last of 3 warnings and errors:", lines[2], lines[3], lines[5]]
