"""What keeps a run directory safe to write into: no deletion or rewrite through a symbolic link
(issue 17, class 1), and a failed write named for what it is (a full disk, a read-only file
system, a folder that cannot be created) with the path and the fix (class 4).
``run.artifacts`` re-exports every name, where the run directory uses them.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from ..errors import PDSelectError, StageError


class RunDirError(PDSelectError):
    """The run directory cannot be used (not ours, the working directory, locked, ...)."""


class RunDirLinkError(RunDirError, StageError):
    """A path pdselect would delete or rewrite is a symbolic link (its target is outside the
    run's control: deleting "inside" it would delete the user's files)."""


def links_under(root: str | Path, limit: int = 5) -> list[Path]:
    """Symbolic links at ``root`` or anywhere below it (links are listed, never followed)."""
    root = Path(root)
    if root.is_symlink():
        return [root]
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):  # followlinks=False
        for name in dirnames + filenames:
            if (Path(dirpath) / name).is_symlink():
                found.append(Path(dirpath) / name)
                if len(found) >= limit:
                    return found
    return found


def refuse_links(path: str | Path, action: str) -> None:
    """Raise :class:`RunDirLinkError` when ``path`` is, or holds, a symbolic link: pdselect
    never deletes or rewrites files through a link (issue 17, class 1)."""
    links = links_under(path)
    if not links:
        return
    link = links[0]
    try:
        target = os.readlink(link)
    except OSError:
        target = "?"
    more = f" (and {len(links) - 1} more link(s))" if len(links) > 1 else ""
    raise RunDirLinkError(
        f"{link} is a symbolic link to {target}{more}; pdselect {action}, and through the link "
        "it would delete or overwrite files outside the run directory. Nothing was deleted. "
        f"Fix: remove the link (`rm {link}` removes only the link, not {target}) or choose a "
        "new run_dir.")


def remove_tree(path: str | Path) -> None:
    """``shutil.rmtree`` for a folder of the run directory, refusing links (refuse_links);
    a missing folder is fine."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    refuse_links(path, f"deletes {path} to re-create it")
    shutil.rmtree(path)


def refuse_links_in_run(root: Path) -> None:
    """Refuse a run directory holding a symbolic link anywhere (a stage folder, a file in it,
    ``score/sharded``, ``report.md``, the lock): every one is a path a re-run deletes, resets
    or rewrites. Checked when the run is claimed, before anything is deleted."""
    for child in sorted(root.iterdir()):
        refuse_links(child, "deletes and rewrites the files of its run directory")


# errno -> (cause, fix) of a write that failed for the place, not for pdselect
_STORAGE = {
    errno.ENOSPC: ("the disk is full (no space left on device)",
                   "free space on that disk, or choose a run_dir on another disk; then run "
                   "again (finished stages are kept)"),
    errno.EDQUOT: ("the disk quota is exceeded", "free space within your quota, or choose a "
                   "run_dir on another disk"),
    errno.EROFS: ("the file system is read-only", "choose a run_dir on a writable disk"),
    errno.EACCES: ("permission denied", "choose a run_dir you may write to, or fix the "
                   "folder's permissions"),
    errno.EPERM: ("operation not permitted", "choose a run_dir you may write to"),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", "choose another run_dir"),
    errno.ENOENT: ("folders cannot be created there (a virtual file system such as /proc or "
                   "/sys, or a parent that vanished)", "choose a run_dir on a real disk, e.g. "
                   "run_dir=runs/my_run"),
}
_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
# what libraries say instead of an errno when a write runs out of space (torch.save: a C++
# stream error)
_SPACE_WORDS = ("basic_ios::clear", "file write failed", "PytorchStreamWriter",
                "No space left on device")


def low_on_space(path: Path, below: int = 64 * 2**20) -> bool:
    """True when the disk holding ``path`` (or its nearest existing parent) has < ``below``
    bytes free."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free < below
    except OSError:
        return False


def storage_error(e: BaseException, where: Path, creating: bool = False) -> PDSelectError | None:
    """A RunDirError naming the path, the cause and the fix for a write that failed for lack of
    space or permission (an OSError's errno, or a library's message plus a nearly full disk);
    None for other errors. ``creating``: the run directory itself was being created."""
    code = getattr(e, "errno", None)
    if not creating and code not in _WRITE_ERRNOS:  # e.g. a missing model folder: not ours
        code = None
    if code not in _STORAGE:
        if not (any(w in str(e) for w in _SPACE_WORDS) and low_on_space(where)):
            return RunDirError(f"cannot create or write run_dir {str(where)!r}: {e}. Fix: "
                               "choose another run_dir.") if creating else None
        code = errno.ENOSPC
    cause, fix = _STORAGE[code]
    path = getattr(e, "filename", None) or where
    what = "cannot create the run directory" if creating else "writing failed"
    return RunDirError(f"{what}: {path}: {cause}. Nothing half-written was kept (temporary "
                       f"files are removed). Fix: {fix}.")
