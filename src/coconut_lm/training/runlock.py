"""One owner per run folder: `train` holds `<out_dir>/train.lock` (its pid and host) while it runs.

    lock = acquire_run_lock("runs/x")     # CoconutError if a live process holds it
    ...
    lock.release()                        # removes the file
    lock = hold_run_dir(run_dir, env)     # train's way in: rank 0 takes the lock, every rank sees a refusal, strays go

The lock is an `flock` on the file, so the kernel drops it when its process ends, however it ends
(`kill -9` included); the pid and host in the file only name the owner in messages. A lock file
left by a dead process is therefore free and is taken over. Where the file system has no `flock`,
the file's contents decide instead: a lock of this host whose pid no longer runs is stale and is
taken over; any other is refused.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coconut_lm.errors import CoconutError
from coconut_lm.training import checkpoint as ckpt
from coconut_lm.training import dist

try:
    import fcntl
except ImportError:  # not on POSIX: only the pid check below
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = "train.lock"


@dataclass
class RunLock:
    """A held lock on a run folder; `previous` is the owner of a stale lock file that was taken over, if any."""

    path: Path
    fd: int | None
    previous: dict[str, Any] | None = None
    _held: bool = field(default=True, repr=False)

    def release(self) -> None:
        """Remove the lock file and let go of it (idempotent)."""
        if not self._held:
            return
        self._held = False
        try:
            self.path.unlink(missing_ok=True)  # while still holding it, so no one else's lock file is removed
        finally:
            if self.fd is not None:
                os.close(self.fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def _read_owner(fd: int) -> dict[str, Any] | None:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 4096)
    try:
        owner = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return owner if isinstance(owner, dict) else None


def _refusal(run_dir: Path, path: Path, owner: dict[str, Any] | None) -> CoconutError:
    who = f"pid {owner.get('pid')} on host {owner.get('host')}" if owner else "another process"
    since = f", since {owner['started']}" if owner and owner.get("started") else ""
    return CoconutError(f"{run_dir}: another train is writing this run folder ({who}{since}; lock file {path}); "
                        f"wait for it to end, or choose another out_dir")


def acquire_run_lock(run_dir: str | os.PathLike) -> RunLock:
    """Take the lock of `run_dir` (which must exist) for this process, or raise CoconutError naming its owner."""
    run_dir = Path(run_dir)
    path = run_dir / LOCK_NAME
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise CoconutError(f"{path}: cannot create the run folder's lock file ({e.strerror or type(e).__name__})") \
                from None
        locked = fcntl is not None
        if locked:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = _read_owner(fd)
                os.close(fd)
                raise _refusal(run_dir, path, owner) from None
            except OSError as e:  # a file system without flock: fall back to the pid check
                if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    os.close(fd)
                    raise
                locked = False
        # The previous owner may have removed the file between our open and our flock: lock the current one.
        try:
            current = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if not current:
            os.close(fd)
            continue
        previous = _read_owner(fd)
        if not locked and previous and previous.get("pid") != me["pid"]:
            same_host = previous.get("host") == me["host"]
            if not same_host or _pid_alive(int(previous.get("pid", 0))):
                os.close(fd)
                raise _refusal(run_dir, path, previous)
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode("utf-8"), 0)
        os.fsync(fd)
        stale = previous if previous and previous.get("pid") != me["pid"] else None
        return RunLock(path, fd, stale)


def hold_run_dir(run_dir: Path, env: dist.DistEnv) -> RunLock | None:
    """Become the run folder's one writer before anything is read or written: rank 0 takes `train.lock`
    (`runlock`), or every rank raises the one-line refusal; then clear what a kill left behind there."""
    lock, refusal = None, None
    if env.is_main:
        try:
            if run_dir.exists() and not run_dir.is_dir():
                raise CoconutError(f"config 'out_dir': {run_dir} is a file, not a folder; choose another out_dir")
            try:
                run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise CoconutError(f"{run_dir}: cannot create the run folder ({e.strerror or type(e).__name__})") \
                    from None
            lock = acquire_run_lock(run_dir)
        except CoconutError as e:
            refusal = str(e)
    refusal = dist.broadcast_object(refusal, env)
    if refusal is not None:
        raise CoconutError(refusal)
    if env.is_main:
        if lock is not None and lock.previous:
            print(f"note: took over {lock.path} from pid {lock.previous.get('pid')} on host "
                  f"{lock.previous.get('host')}, which no longer holds it (it ended without cleaning up)")
        for line in ckpt.clean_stray_checkpoints(run_dir):
            print(f"note: {line}")
    dist.barrier(env)
    return lock
