"""A local pool process imports what it runs, not its dispatcher's main module: spawn would run the main
file again in each child, and ``gpurelay``'s is the console script importing the whole CLI (each pool
process held about 60 MB more for it: 147 MB, now 85)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from services.dispatcher.settings import DispatcherSettings

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[3]
MAIN = """
import asyncio, os, sys
from pathlib import Path

with Path(sys.argv[1]).open("a") as ran:  # each process that runs this file as its main module
    ran.write(f"{os.getpid()}\\n")

from services.dispatcher.running.local_pool import LocalPool
from services.dispatcher.settings import DispatcherSettings


async def main() -> None:
    pool = LocalPool(DispatcherSettings(nats_url=sys.argv[2], data_dir=Path(sys.argv[3])), size=2)
    await pool.start()
    print(" ".join(str(proc.pid) for proc in pool._all), flush=True)
    await pool.stop()


if __name__ == "__main__":
    asyncio.run(main())
"""


async def test_pool_processes_do_not_run_the_dispatchers_main_module(
    settings: DispatcherSettings, tmp_path: Path
) -> None:
    script, ran = tmp_path / "dispatcher_main.py", tmp_path / "ran"
    script.write_text(MAIN)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), str(ran), settings.nats_url, str(tmp_path / "data"),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, err.decode()[-2000:]
    workers = [int(pid) for pid in out.split()]
    assert len(workers) == 2
    assert proc.pid not in workers
    assert ran.read_text().split() == [str(proc.pid)]  # the dispatcher's process alone, not its workers
