"""One sweep per folder: a kernel lock that the sweep's forked children hold with it."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from harness.core.errors import ConfigError

LOCK = ".lock"  # flock-ed by the running sweep; holds its pid and host (Lock)


class Lock:
    """A sweep folder's lock: an flock on `.lock`, which also holds the owner's pid, host and start time.

    The kernel holds the lock for as long as any process holds the file open: the sweep and the
    children it forks (run_jobs), which inherit it and die with the sweep. So a second sweep into the
    folder is refused while any of them still writes, a lock whose processes are gone is free, whatever
    pid the file names (a reused pid blocks nothing), and two sweeps can never both take it. The file
    stays: removing it would let a second sweep lock a new file while the first holds the old one.
    """

    DYING_S = 10.0  # how long a lock whose sweep is gone may stay held by its children before they die

    def __init__(self, sweep_dir: Path):
        self.path = sweep_dir / LOCK
        self.owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        self.fd: int | None = None

    def _holder(self) -> dict[str, Any]:
        try:
            holder = json.loads(self.path.read_text())
            return holder if isinstance(holder, dict) else {}
        except (OSError, ValueError):
            return {}

    def _supervisor_alive(self, holder: dict[str, Any]) -> bool:
        """Whether the sweep named in the file is alive (or on another host, where that cannot be told)."""
        if holder.get("host") != self.owner["host"]:
            return True
        try:
            os.kill(int(holder["pid"]), 0)
        except (KeyError, ValueError, TypeError, ProcessLookupError):
            return False
        except PermissionError:  # alive, another user's
            pass
        return True

    def __enter__(self) -> Lock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        except OSError as error:
            raise ConfigError(
                f"hydra.sweep.dir={self.path.parent}: cannot open its lock {self.path} "
                f"({error.strerror or error}); expected a real file or none"
            ) from None
        deadline = time.monotonic() + self.DYING_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = self._holder()
                if self._supervisor_alive(holder) or time.monotonic() > deadline:
                    os.close(fd)
                    who = (
                        f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('started')}"
                        if holder
                        else "a process"
                    )
                    raise ConfigError(
                        f"hydra.sweep.dir={self.path.parent}: another sweep ({who}) is writing there; "
                        "expected it to finish first, or another folder"
                    ) from None
                time.sleep(0.05)  # its sweep is gone: its children are dying with it
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(self.owner) + "\n").encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.fd is not None:
            os.close(self.fd)  # forked children hold it until they end
            self.fd = None
