"""What keeps the host runtime's jobs away from the server and from each other.

The data dir holds every job's secrets (jobs.db), logs and the saved token: its files are 0600 and
its folders 0700, readable by the server alone. A server started as root runs each job as a user
of its own (a uid per namespace, from `JOB_UID_BASE` on, allocated in jobs.db; no /etc/passwd
entry): then the data dir and its `work` and `users` folders are 0711, so a job's user can pass
through them to its own work dir and caches (0700, owned by it) but cannot list them or open
anything else. A server that cannot do that (not root) refuses tokens of several users unless
told `--insecure-shared-host`: their jobs would read each other's secrets.

A uid per namespace rather than per job: the namespace's jobs keep one warm uv cache (a fresh
uid would install every package again), and they belong to one owner, who can already read
their logs and rerun them. The members of an org share the org's uid for the org's jobs.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from hfuv.errors import UsageError

# The first uid of systemd's unused range 1879048192-2147483647: no regular, system, dynamic or
# container user has one (https://systemd.io/UIDS-GIDS/).
JOB_UID_BASE = 1_879_048_192
PASS_THROUGH = 0o711  # others may traverse to a name they know, not list or read
PRIVATE_DIR, PRIVATE_FILE = 0o700, 0o600
# Folders a job's user passes through to reach its own work dir (work/ID) and caches (users/UID).
SHARED_FOLDERS = ("work", "users")


def check_cluster_users(users: Iterable[str], *, insecure_shared_host: bool) -> None:
    """On the ray runtime every job can read every other job's env: refuse tokens of several
    users unless told `--insecure-shared-host`."""
    names = sorted(set(users))
    if len(names) > 1 and not insecure_shared_host:
        raise UsageError(
            f"tokens of {len(names)} users ({', '.join(names)}) on the ray runtime: every job on "
            "a Ray cluster can read every other job's env and secrets (Ray gives its jobs the "
            "cluster's token, and its jobs API shows each job's runtime env)",
            hint="give tokens of one user (a cluster per user), or pass --insecure-shared-host "
            "to accept that",
        )


def isolates_jobs(users: Iterable[str], *, insecure_shared_host: bool) -> bool:
    """Whether each job runs as a user of its own; refuse, with why, a server whose jobs of
    different users would share this process's user."""
    if insecure_shared_host:
        return False
    if os.geteuid() == 0:
        return True
    names = sorted(set(users))
    if len(names) > 1:
        raise UsageError(
            f"tokens of {len(names)} users ({', '.join(names)}) on a server that is not root: "
            "their jobs would all run as this server's user and could read each other's secrets "
            "and code",
            hint="start hfuv server as root (each job then runs as a user of its own), give "
            "tokens of one user, or pass --insecure-shared-host to accept that",
        )
    return False


def closed_to_jobs(data_dir: Path) -> str | None:
    """The folder above `data_dir` that keeps a job's own user out of it, if one does."""
    from hfuv.runtime.host import blocker

    return blocker(str(data_dir.resolve().parent))


def secure_data_dir(data_dir: Path, *, jobs_pass_through: bool) -> None:
    """Make `data_dir` the server's alone, tightening what an older server left readable."""
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(PASS_THROUGH if jobs_pass_through else PRIVATE_DIR)
    for folder in SHARED_FOLDERS:
        (data_dir / folder).mkdir(exist_ok=True)
    for entry in os.scandir(data_dir):
        shared = jobs_pass_through and entry.name in SHARED_FOLDERS
        _tighten(entry, PASS_THROUGH if shared else None)
        if entry.is_dir(follow_symlinks=False):
            # A job's own work dir or cache stays its user's; only its mode is tightened.
            for inner in os.scandir(entry.path):
                _tighten(inner)


def _tighten(entry: os.DirEntry[str], dir_mode: int | None = None) -> None:
    try:
        info = entry.stat(follow_symlinks=False)
        if stat.S_ISDIR(info.st_mode):
            wanted = dir_mode or PRIVATE_DIR
        elif stat.S_ISREG(info.st_mode):
            wanted = PRIVATE_FILE
        else:
            return  # a link is not followed out of the data dir
        if stat.S_IMODE(info.st_mode) != wanted:
            os.chmod(entry.path, wanted)
    except OSError:
        pass  # gone meanwhile
