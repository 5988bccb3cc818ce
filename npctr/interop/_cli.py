"""What the verification commands (``golden``, ``compare``, ``conformance``) share on the command line:
an argument parser whose errors are one line, and the exit codes.

Exit codes: 0 success, 1 a data failure (numbers disagree, nothing was compared, a
computation failed), 2 a usage error (bad arguments, unreadable or invalid input files).
Errors are one line on stderr, ``<command>: <message>``, never a traceback.
"""
import argparse

OK, FAILED, USAGE = 0, 1, 2


class UsageError(Exception):
    """A bad command line or input file: exit status 2, the message on one line."""


class Parser(argparse.ArgumentParser):
    """``argparse`` that raises :class:`UsageError` instead of printing usage and exiting."""

    def error(self, message):
        raise UsageError(message)


def one_line(exc):
    """An exception as one line of text (its first line; the type when it says nothing)."""
    text = str(exc).strip()
    if isinstance(exc, KeyError) and exc.args:
        text = f"missing key {exc.args[0]!r}"
    first = text.splitlines()[0] if text else ""
    return first if first and isinstance(exc, (UsageError, ValueError, OSError)) else \
        f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def fail(command, exc, stream):
    """Print ``<command>: <one line>`` on ``stream``."""
    print(f"{command}: {one_line(exc)}", file=stream)
