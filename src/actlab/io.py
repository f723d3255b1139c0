"""Publishing folders atomically: the one place that writes a folder under a temporary name, flushes it to
disk and renames it into place (checkpoints, the frame cache, converted datasets).

    with atomic_dir(target, replace=True) as tmp:
        ...write files into tmp...
    # `target` now holds exactly what was written; after an exception or a kill, what it held before

- Every file and folder of the new tree is fsynced before the rename that publishes it, and the parent
  folder after it, so a power cut cannot publish empty files.
- An existing `target` is swapped with the new folder in one step (Linux `renameat2(RENAME_EXCHANGE)`),
  so `target` exists at every moment. Where the exchange is unavailable (other systems, some file
  systems) the old folder is renamed aside first; `recover_dir` puts it back if the process died between
  the two renames.
- Temporary names are `.<name>.tmp-<pid>` and `.<name>.old-<pid>`; `remove_stale` deletes those left by
  processes that no longer run.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from actlab.errors import ActlabError

_STALE = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)$")
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def temp_name(target: Path, kind: str) -> Path:
    return target.with_name(f".{target.name}.{kind}-{os.getpid()}")


@contextmanager
def atomic_dir(target: str | Path, replace: bool = False, create: bool = True) -> Iterator[Path]:
    """Yields a temporary folder beside `target` (created empty, or only named when `create=False`, for
    writers that insist on creating their folder); when the block ends without an exception the folder
    is flushed and published as `target`. An existing `target` is replaced only with `replace` (otherwise
    publishing raises FileExistsError). The temporary folder never outlives the block."""
    target = Path(target)
    tmp = temp_name(target, "tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    if create:
        tmp.mkdir()
    try:
        yield tmp
        fsync_tree(tmp)
        if target.exists():
            if not replace:
                raise FileExistsError(errno.EEXIST, "already exists", str(target))
            _replace(tmp, target)
        else:
            tmp.rename(target)
        fsync_dir(target.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # after an exchange it holds the previous `target`


def _replace(new: Path, target: Path) -> None:
    if _exchange(new, target):
        return
    old = temp_name(target, "old")
    shutil.rmtree(old, ignore_errors=True)
    target.rename(old)
    new.rename(target)  # a kill here leaves `old` complete; recover_dir renames it back
    shutil.rmtree(old, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swaps two paths; False where the system or file system cannot."""
    if sys.platform != "linux":
        return False
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:  # C library older than glibc 2.28
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def fsync_tree(folder: Path) -> None:
    """Flushes every file and folder under `folder` (and `folder` itself) to disk."""
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))


def fsync_dir(folder: Path) -> None:
    """Makes renames and new entries in `folder` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale(folder: str | Path, name: str | None = None) -> list[Path]:
    """Deletes the `.tmp-<pid>` / `.old-<pid>` entries in `folder` (those of target `name` only, if given)
    left by processes that are gone, or by an earlier process with this one's pid: call it before this
    process writes into `folder`. A `.old-` folder whose target is missing is renamed back instead
    (`recover_dir`)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for entry in sorted(folder.iterdir()):
        match = _STALE.match(entry.name)
        if match is None or (name is not None and match["name"] != name) or _running(int(match["pid"])):
            continue
        if match["kind"] == "old" and recover_dir(folder / match["name"], entry):
            continue
        shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def recover_dir(target: Path, old: Path) -> bool:
    """Renames `old` (a complete folder moved aside by `_replace`) back to `target` when `target` is missing."""
    if target.exists() or not old.is_dir():
        return False
    old.rename(target)
    fsync_dir(target.parent)
    return True


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return False  # an earlier process that had our pid; we have not written anything yet
    if os.name != "posix":
        return True  # no safe liveness probe: keep the entry
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_json(path: str | Path, what: str = "", damaged: str = "") -> dict[str, Any]:
    """The JSON object in the file `path`, or one line naming the file: `<path>: cannot be read as JSON
    (<why>)` or `<path>: holds a JSON list; expected an object<what>`, each followed by `; <damaged>` when
    given (what the file's owner should conclude). The one reader of actlab's and LeRobot's JSON files."""
    tail = f"; {damaged}" if damaged else ""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ActlabError(f"{path}: cannot be read as JSON ({why}){tail}") from None
    if not isinstance(data, dict):
        raise ActlabError(f"{path}: holds a JSON {json_kind(data)}; expected an object{what}{tail}")
    return data


def json_kind(value: Any) -> str:
    return {list: "list", str: "string", bool: "boolean", int: "number", float: "number"}.get(type(value), "null")
