"""The live-splat seed's client snippets, replayed unchanged against a session's ``urls.compat``.

* :class:`SeedApp`: the React component's calls (``tests/fixtures/seeds/live_splat_client.js``) under
  Node, inside the harness ``seed_replay.mjs`` (which sets ``import.meta.env.VITE_API_URL``, fakes the
  canvas and the timers and records every response); one command at a time.
* :func:`lerobot_snippet`: the LeRobot ``requests`` example (``lerobot_joint_angles.py``) run with its
  placeholder URL replaced by the compat URL and a ``policy`` whose ``forward`` gives the joints.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from services.common.processes import preexec_die_with_parent

HERE = Path(__file__).resolve().parent
SEEDS = HERE.parent / "fixtures" / "seeds"
SEED_MARKER = "// @@SEED@@\n"
NODE = shutil.which("node")
PLACEHOLDER_URL = "http://YOUR_BACKEND_URL"


@dataclass(frozen=True)
class Response:
    """One response the seed's code got: its route (last path segment), status, type and body."""

    method: str
    route: str
    status: int
    content_type: str | None
    body: bytes

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


@dataclass
class Answer:
    """What one harness command did: the responses, what the snippet logged, the command's own result."""

    responses: list[Response] = field(default_factory=list)
    logs: list[Any] = field(default_factory=list)
    result: Any = None

    @property
    def response(self) -> Response:
        """The one response of the command."""
        (only,) = self.responses
        return only


class SeedApp:
    """The seed's React calls in a Node process (``async with SeedApp(url, workdir) as app``)."""

    def __init__(self, api_url: str, workdir: Path) -> None:
        self.api_url, self.workdir = api_url, workdir
        self.process: asyncio.subprocess.Process | None = None

    def module(self) -> Path:
        """The harness with the seed's snippet put in verbatim, written to ``workdir``."""
        harness = (HERE / "seed_replay.mjs").read_text()
        assert harness.count(SEED_MARKER) == 1
        path = self.workdir / "seed_replay.mjs"
        path.write_text(harness.replace(SEED_MARKER, (SEEDS / "live_splat_client.js").read_text()))
        return path

    async def __aenter__(self) -> SeedApp:
        assert NODE is not None
        self.process = await asyncio.create_subprocess_exec(
            NODE, str(self.module()), env={"VITE_API_URL": self.api_url, "PATH": "/usr/bin:/bin"},
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, preexec_fn=preexec_die_with_parent(),
        )  # fmt: skip
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self.process is not None
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            async with asyncio.timeout(10):
                await self.process.wait()
        finally:
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()

    async def do(self, op: str, **args: Any) -> Answer:
        """Run one harness command (``upload`` with ``jpeg`` bytes, ``ply``, ``poll``, ``stop``, ``reset``,
        ``health``); what it did. A JavaScript error fails the test."""
        assert self.process is not None
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        args = {k: base64.b64encode(v).decode() if isinstance(v, bytes) else v for k, v in args.items()}
        command = {"op": op, **args}
        self.process.stdin.write(json.dumps(command).encode() + b"\n")
        await self.process.stdin.drain()
        async with asyncio.timeout(30):
            line = await self.process.stdout.readline()
        assert line, f"the Node harness exited ({await self.process.wait()})"
        raw = json.loads(line)
        assert "error" not in raw, raw["error"]
        answer = Answer(result=raw["result"])
        for record in raw["records"]:
            if record["kind"] == "log":
                answer.logs.append(record["value"])
            else:
                body = base64.b64decode(record["body"])
                fields = (record["method"], record["route"], record["status"], record["contentType"], body)
                answer.responses.append(Response(*fields))
        return answer


class Policy:
    """The snippet's ``policy``: ``forward(...)`` gives the arm's joint positions (radians) as numpy."""

    def __init__(self, joints: list[float]) -> None:
        self.joints = joints
        self.calls = 0

    def forward(self, *args: Any) -> np.ndarray[Any, Any]:
        self.calls += 1
        return np.array(self.joints)


def lerobot_snippet(compat_url: str, policy: Policy) -> dict[str, Any]:
    """Run the seed's LeRobot snippet against ``compat_url`` (blocking: call it off the event loop);
    its namespace afterwards (``send_joint_angles``, ``joint_state``)."""
    source = (SEEDS / "lerobot_joint_angles.py").read_text()
    assert source.count(PLACEHOLDER_URL) == 1
    code = compile(source.replace(PLACEHOLDER_URL, compat_url), str(SEEDS / "lerobot_joint_angles.py"), "exec")
    namespace: dict[str, Any] = {"__name__": "lerobot_seed", "policy": policy}
    exec(code, namespace)  # noqa: S102 - the seed's own snippet, committed verbatim
    return namespace
