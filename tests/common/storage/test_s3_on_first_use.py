"""aioboto3 and botocore load only where S3 is the backend: ``gpurelay dev``'s processes and its local
pool keep files on disk, and each held about 17 MB of S3 client for nothing (issue 34: memory at rest)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PROBE = """
import sys
from pathlib import Path
import services.cli.main, services.cli.dev, services.gateway.app, services.notifier.app
import services.dispatcher.service, modal_workers.runtime.local_host, modal_workers.runtime.worker_runtime
from services.common.config import BaseServiceSettings
from services.common.storage import make_storage
local = make_storage(BaseServiceSettings(storage_backend="local", data_dir=Path(sys.argv[1])))
print(type(local).__name__, sorted(m for m in sys.modules if m.split(".")[0] in ("aioboto3", "botocore"))[:3])
s3 = make_storage(BaseServiceSettings(storage_backend="s3", s3_bucket="b", data_dir=Path(sys.argv[1])))
print(type(s3).__name__, "botocore" in sys.modules)
"""


def test_a_local_backend_loads_no_s3_client_and_an_s3_one_does(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.splitlines() == ["LocalStorage []", "S3Storage True"]
