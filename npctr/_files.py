"""Files npctr reads and writes: only regular files are opened, and every file npctr writes
appears whole or not at all.

Reading (:func:`open_regular`): the path is ``stat``-ed first and anything but a regular file
(a directory, a FIFO, a device, a socket) is a ``ValueError`` saying what it is, before it is
opened: reading a FIFO blocks until a writer comes, reading ``/dev/zero`` never ends. The file
is then opened with ``O_NONBLOCK`` (a FIFO swapped in meanwhile cannot block the open) and
checked again on the open descriptor (``fstat``), so what is read is what was checked.

Writing (:func:`create_temp`, :func:`replace`): the data goes to a temp file next to the
target, ``.<name>.<pid>.<random><suffix>``, created as ``open`` would create the target
(mode ``0o666`` minus the umask) or, when it replaces a file, with that file's mode; it is
fsynced and renamed over the target. A later write of the same target deletes the temp files
that killed writers left behind (:func:`remove_stale_temps`; a live writer's file is kept).
"""
import os
import re
import secrets
import stat

#: what a file type is called in messages
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def file_kind(mode):
    """``'a directory'``, ``'a FIFO (named pipe)'``, ... for a ``st_mode`` that is not a regular file."""
    return next((what for test, what in _KINDS if test(mode)), "not a regular file")


def check_regular(path, what="file"):
    """``os.stat(path)``; a ``ValueError`` unless it is a regular file (``FileNotFoundError``
    passes through)."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{what} {os.fspath(path)!r} is {file_kind(st.st_mode)}, not a regular file")
    return st


def open_regular(path, what="file"):
    """Open ``path`` for binary reading if it is a regular file (see the module docstring);
    returns ``(file object, size in bytes)``."""
    check_regular(path, what)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):        # replaced between the stat and the open
            raise ValueError(f"{what} {os.fspath(path)!r} is {file_kind(st.st_mode)}, not a regular file")
        return os.fdopen(fd, "rb"), st.st_size
    except BaseException:
        os.close(fd)
        raise


# -- writing ------------------------------------------------------------------------------------
def temp_path(path, suffix):
    """``.<name>.<pid>.<random><suffix>`` next to ``path``."""
    head, tail = os.path.split(os.fspath(path))
    return os.path.join(head, f".{tail}.{os.getpid()}.{secrets.token_hex(4)}{suffix}")


def create_temp(path, suffix):
    """Create the temp file for a write of ``path``: returns ``(fd, temp path)``.

    Deletes stale temps of ``path`` first; the new file gets ``path``'s mode if it exists,
    else ``0o666`` minus the umask, as ``open`` would create ``path`` itself.
    """
    remove_stale_temps(path, suffix)
    tmp = temp_path(path, suffix)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        try:
            os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        except FileNotFoundError:
            pass
    except BaseException:
        os.close(fd)
        unlink_quietly(tmp)
        raise
    return fd, tmp


def replace(tmp, path):
    """Rename the finished (fsynced) temp file over ``path`` and make the rename durable."""
    os.replace(tmp, path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def with_path(exc, path):
    """``exc`` (an OSError without a file name, e.g. a full disk's ENOSPC) as the same error type
    naming ``path``, so that its message says where."""
    if exc.filename is not None or exc.errno is None:
        return exc
    return type(exc)(exc.errno, exc.strerror, os.fspath(path))


def unlink_quietly(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def remove_stale_temps(path, suffix):
    """Delete temp files of an earlier write of ``path`` whose process no longer runs (a killed
    write); a write in progress in another live process keeps its file."""
    head, tail = os.path.split(os.fspath(path))
    pattern = re.compile(re.escape(f".{tail}.") + r"(\d+)\.[0-9a-f]{8}" + re.escape(suffix) + "$")
    try:
        names = os.listdir(head or ".")
    except OSError:
        return
    for name in names:
        match = pattern.match(name)
        if match is None or process_alive(int(match.group(1))):
            continue
        try:
            os.unlink(os.path.join(head, name))
        except OSError:
            pass


def process_alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, OverflowError):
        return True       # exists (another user's) or cannot tell: keep its file
    return True
