"""Running ``ip`` and ``iptables``, and telling whether this machine can make network namespaces."""

from __future__ import annotations

import os
import shutil
import subprocess

IP_TIMEOUT_S = 10.0
TOOLS = ("ip", "iptables", "iptables-save")


def run(*argv: str, check: bool = True) -> str:
    """Run one command (``ip``, ``iptables`` ...) and return its output; raise with its stderr on failure."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=IP_TIMEOUT_S, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def ip(*args: str, netns: str | None = None, check: bool = True) -> str:
    """``ip [-n NETNS] ARGS``."""
    return run("ip", *(("-n", netns) if netns else ()), *args, check=check)


def iptables(netns: str, *args: str, table: str = "filter") -> str:
    """``iptables -t TABLE ARGS`` inside namespace ``netns`` (its rules live and die with it)."""
    return run("ip", "netns", "exec", netns, "iptables", "-w", "5", "-t", table, *args)


def unavailable_reason() -> str | None:
    """Why network namespaces cannot be made here (``None``: they can): not root, or a tool missing,
    or the kernel refuses one."""
    if os.geteuid() != 0:
        return "the network-fault suite needs root (network namespaces, veth, iptables)"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"missing {', '.join(missing)} (make test installs Debian's iptables and iproute2 as root)"
    probe = f"gnfprobe{os.getpid()}"
    try:
        ip("netns", "add", probe)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        return f"this kernel or sandbox refuses network namespaces: {exc}"
    try:
        iptables(probe, "-L", "INPUT", "-n")
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        return f"iptables does not work in a network namespace here: {exc}"
    finally:
        ip("netns", "del", probe, check=False)
    return None
