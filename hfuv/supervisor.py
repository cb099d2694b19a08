"""The parent of a local job's process: its timeout, its terminal, its signals, its exit code.

A local run ends at its timeout as a job does on its machine: uv gets SIGTERM (and passes it to
the script), and after a grace period the job's whole process group gets SIGKILL. For that hfuv
stays the parent of the job's process, which otherwise gets what an exec would have given it:

- the same stdin, stdout and stderr;
- in the foreground of a terminal, the terminal: Ctrl-C, Ctrl-Z and reads reach the script as
  without hfuv (a stopped job stops hfuv too, so the shell shows it; `fg` resumes both);
- the signals sent to hfuv itself (`kill`, a supervisor's SIGTERM, SIGINT without a terminal),
  passed to uv, which passes them to the script: the script gets each once, as under `uv run`;
- its exit code as hfuv's: 128+N when signal N ended it, 124 after the timeout.

When the job's main process ends, what it left running in its process group ends with it, as
when a job's container stops. Standard library only, and not the `signal` module (it imports
enum): the replay of a prepared run uses this module before anything else is loaded.
"""

from __future__ import annotations

import os
import sys

try:
    import _signal as signal  # the C module under `signal`
except ImportError:  # pragma: no cover - not CPython
    import signal  # type: ignore[no-redef]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import NoReturn

GRACE_SECONDS = 3  # from SIGTERM to SIGKILL at the timeout, as in hfuv server
TIMEOUT_EXIT_CODE = 124  # what `hfuv run` exits with when a remote job times out
TIMEOUT_MESSAGE = "ended ERROR: Job timeout"  # the words `hfuv run` prints for a remote one
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
             signal.SIGUSR2)  # fmt: skip
# What the job's process must not inherit from hfuv: its handlers, and the signals Python (or
# this module) ignores, which an exec would keep ignored.
RESET = (*FORWARDED, signal.SIGTTOU, signal.SIGPIPE, signal.SIGXFSZ)


def run_job(
    executable: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    cwd: str,
    job_id: str,
    timeout_seconds: int | None,
    once_started: Callable[[], None] | None = None,
) -> NoReturn:
    """Run the job's process to its end, within its timeout; exit as it did. `once_started`
    runs in hfuv while the job starts: housekeeping that need not delay it."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()  # or the child would write what is buffered a second time
    terminal = foreground_terminal()
    # No signal may reach a half-made parent or child: block them until each side is ready.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, (*FORWARDED, signal.SIGALRM))
    signal.signal(signal.SIGTTOU, signal.SIG_IGN)  # to give the terminal away and take it back
    pid = os.fork()
    if pid == 0:
        _become_job(executable, argv, env, cwd, terminal, mask)
    job = Supervised(pid, terminal)
    # The child sets its group too: whichever runs first, killpg is safe. (This fails when the
    # child has already exec'd, having set it.)
    _quietly(os.setpgid, pid, pid)
    for signum in FORWARDED:
        signal.signal(signum, job.forward)
    signal.signal(signal.SIGALRM, job.on_alarm)
    if timeout_seconds:
        signal.alarm(timeout_seconds)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    if once_started is not None:
        once_started()
    status = job.wait()
    signal.alarm(0)
    job.kill_group(signal.SIGKILL)  # what the job left behind
    job.take_terminal()
    code = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    if job.timed_out:
        sys.stderr.write(f"job {job_id} {TIMEOUT_MESSAGE}\n")
        code = TIMEOUT_EXIT_CODE
    sys.stderr.flush()
    os._exit(code)


def foreground_terminal() -> int | None:
    """The descriptor among stdin, stdout and stderr of the terminal this process is in the
    foreground of, if any."""
    for fd in (0, 1, 2):
        try:
            if os.tcgetpgrp(fd) == os.getpgrp():
                return fd
        except OSError:
            continue
    return None


def _become_job(
    executable: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: str,
    terminal: int | None,
    mask: set[int],
) -> NoReturn:
    """In the child: a process group of its own (with the terminal), then exec."""
    try:
        os.setpgid(0, 0)
        if terminal is not None:
            _quietly(os.tcsetpgrp, terminal, os.getpid())
        for signum in RESET:
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.chdir(cwd)
        os.execve(executable, argv, env)
    except OSError as exc:
        os.write(2, f"error: could not start {executable}: {exc.strerror}\n".encode())
    finally:
        os._exit(1)


class Supervised:
    """The job's process (and its group, of the same id) as seen from hfuv."""

    def __init__(self, pid: int, terminal: int | None) -> None:
        self.pid = pid
        self.terminal = terminal
        self.timed_out = False
        self.ended = False

    def wait(self) -> int:
        """The job's wait status once it ends; a stop (Ctrl-Z) stops hfuv too, meanwhile."""
        options = os.WUNTRACED if self.terminal is not None else 0
        while True:
            _, status = os.waitpid(self.pid, options)
            if not os.WIFSTOPPED(status):
                self.ended = True
                return status
            # Stop hfuv's group as the terminal would have, so the shell sees a stopped job.
            # (Unless no shell can continue it: an orphaned group does not stop.)
            self.take_terminal()
            os.killpg(os.getpgrp(), signal.SIGTSTP)
            # Continued: by `fg` (the shell gave hfuv the terminal again) or by `bg`.
            if self.terminal is not None and self.terminal_is_with(os.getpgrp()):
                _quietly(os.tcsetpgrp, self.terminal, self.pid)
            self.kill_group(signal.SIGCONT)

    def forward(self, signum: int, _frame: object) -> None:
        """Pass a signal sent to hfuv on to uv, which passes it to the script.

        uv does not pass on SIGINT when the script is in the terminal's foreground group (the
        terminal sent it to the whole group), so then the whole group gets it, as from Ctrl-C.
        """
        if self.ended:
            return
        if signum == signal.SIGINT and self.terminal_is_with(self.pid):
            self.kill_group(signum)
        else:
            self._kill(signum)

    def on_alarm(self, _signum: int, _frame: object) -> None:
        if self.ended:
            return
        if not self.timed_out:
            self.timed_out = True
            self._kill(signal.SIGTERM)
            signal.alarm(GRACE_SECONDS)
        else:
            self.kill_group(signal.SIGKILL)

    def terminal_is_with(self, group: int) -> bool:
        """The terminal's foreground process group is `group`."""
        try:
            return self.terminal is not None and os.tcgetpgrp(self.terminal) == group
        except OSError:
            return False

    def take_terminal(self) -> None:
        """Give hfuv's group the terminal back, if the job's group has it."""
        if self.terminal is not None and self.terminal_is_with(self.pid):
            _quietly(os.tcsetpgrp, self.terminal, os.getpgrp())

    def kill_group(self, signum: int) -> None:
        _quietly(os.killpg, self.pid, signum)  # fails when nothing is left in it

    def _kill(self, signum: int) -> None:
        _quietly(os.kill, self.pid, signum)


def _quietly(call: Callable[..., object], *args: int) -> None:
    """`call(*args)`, ignoring an OSError (contextlib costs more to import than a replay)."""
    try:  # noqa: SIM105
        call(*args)
    except OSError:
        pass
