"""Errors that the CLI turns into one line on stderr and an exit code."""

import errno

# OSError numbers of a write refused for want of space or quota: said plainly, exit 1
FULL_DISK = (errno.ENOSPC, errno.EDQUOT)


class ReconError(Exception):
    """Base class: the message is shown to the user as is."""

    exit_code = 2


class BadInput(ReconError):
    """Bad usage or bad input (missing file, unreadable data, wrong shape): exit 2."""

    exit_code = 2


class JobFailed(ReconError):
    """The job ran but failed its purpose (data check found problems, no convergence): exit 1."""

    exit_code = 1


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (at most 200 characters), else its type's name:
    a library's error as the reason part of a one-line message."""
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__
