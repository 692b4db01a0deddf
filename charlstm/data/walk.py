"""The files a folder holds, as a repository holds them.

Version-control folders (.git, .hg, .svn, and any folder whose name starts with a dot)
are never entered. A `.gitignore` or `.ignore` anywhere in the tree is honoured with
git's semantics (the maintained `pathspec` library, not hand-written matching): a
deeper file's rules win over a shallower one's, `!pattern` re-includes, and an
ignored folder is not entered. `data.include` globs keep only matching files,
`data.exclude` globs drop files and folders, `data.respect_ignore: false` turns the
ignore files off. Only regular files are listed: FIFOs, sockets and devices (which
could block a read forever), links to folders (not followed, so no loop), links to
files outside the folder, broken links and link loops are passed over and reported,
never opened.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

IGNORE_FILES = (".gitignore", ".ignore")


@dataclass(frozen=True)
class Skipped:
    """A file left out of a corpus, and why (one of REASONS' keys)."""

    name: str  # relative to data.path, or archive:member
    reason: str

    @property
    def shown(self) -> str:
        """The name as it can be printed: bytes of a name that is not UTF-8 as \\xNN."""
        return self.name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


# What each reason is called in the summary line.
REASONS = {
    "binary": "binary",
    "not-text": "not valid text in data.encoding",
    "special": "not a regular file",
    "link": "links to folders",
    "outside": "links to files outside the folder",
    "encrypted": "encrypted archive members",
    "broken-link": "broken links or link loops",
    "unreadable": "unreadable",
    "nested": "archives or compressed files inside an archive",
}


@dataclass
class Listing:
    """What a data.path names: the files to read, in a fixed order, what was passed
    over, and the ignore files that decided (part of the cache's fingerprint)."""

    root: Path
    files: list[Path] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    ignore_files: list[Path] = field(default_factory=list)


def matches(rel: str, patterns: tuple[str, ...]) -> bool:
    """A glob matches a file by its name or its path relative to data.path."""
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(rel, p) for p in patterns)


class IgnoreRules:
    """The .gitignore / .ignore files met so far, by the folder they stand in."""

    def __init__(self) -> None:
        self.specs: dict[str, pathspec.GitIgnoreSpec] = {}  # folder ("" = root) -> rules

    def read(self, folder_rel: str, folder: Path, found: list[Path]) -> None:
        lines: list[str] = []
        for name in IGNORE_FILES:
            path = folder / name
            try:
                lines += path.read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                continue
            found.append(path)
        if lines:
            self.specs[folder_rel] = pathspec.GitIgnoreSpec.from_lines(lines)

    def ignored(self, rel: str, is_dir: bool) -> bool:
        """Git's answer for a path relative to the root: the deepest rules that have an
        opinion decide."""
        parts = rel.split("/")
        for depth in range(len(parts) - 1, -1, -1):
            base = "/".join(parts[:depth])
            spec = self.specs.get(base)
            if spec is None:
                continue
            sub = "/".join(parts[depth:]) + ("/" if is_dir else "")
            verdict = spec.check_file(sub).include
            if verdict is not None:
                return verdict
        return False


def walk(
    root: Path,
    include: tuple[str, ...] = (),
    exclude: tuple[str, ...] = (),
    respect_ignore: bool = True,
    skip_dirs: frozenset[str] = frozenset(),
    found: Callable[[int], None] | None = None,
) -> Listing:
    """Every file under `root` that a repository would call its own, sorted by path.
    `found` is told how many files each folder held (the walk's progress)."""
    listing = Listing(root)
    rules = IgnoreRules()
    real_root = os.path.realpath(root)
    # Plain strings while walking: a corpus may have hundreds of thousands of files, and
    # building paths piece by piece would cost more than finding them.
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
        rel_dir = "" if rel_dir == "." else rel_dir
        prefix = rel_dir + "/" if rel_dir else ""
        if respect_ignore:
            rules.read(rel_dir, Path(dirpath), listing.ignore_files)
        kept = []
        for d in sorted(dirnames):
            rel = prefix + d
            if d.startswith(".") or d in skip_dirs or matches(rel, exclude):
                continue
            if os.path.islink(os.path.join(dirpath, d)):
                listing.skipped.append(Skipped(rel, "link"))
                continue
            if respect_ignore and rules.ignored(rel, is_dir=True):
                continue
            kept.append(d)
        dirnames[:] = kept
        if found is not None:
            found(len(filenames))
        for name in sorted(filenames):
            rel = prefix + name
            if include and not matches(rel, include):
                continue
            if matches(rel, exclude) or (respect_ignore and rules.ignored(rel, is_dir=False)):
                continue
            full = os.path.join(dirpath, name)
            reason = _not_regular(full) or _leaves(full, real_root)
            if reason is None:
                listing.files.append(Path(full))
            else:
                listing.skipped.append(Skipped(rel, reason))
    return listing


def _not_regular(path: str) -> str | None:
    """Why a file cannot be read as one, or None. stat never blocks, not even on a FIFO
    (opening one would, until a writer came)."""
    try:
        st = os.stat(path)  # follows a link to the file it names
    except OSError as err:
        if err.errno in (errno.ENOENT, errno.ELOOP):
            return "broken-link"
        return "unreadable"
    return None if stat.S_ISREG(st.st_mode) else "special"


def _leaves(path: str, real_root: str) -> str | None:
    """ "outside" for a link whose file lies outside the folder: a folder from a stranger
    must never make charlstm read elsewhere (a link to ~/.ssh/id_rsa would put the key
    into the model), as git stores such a link as a link, not as the file."""
    if not os.path.islink(path):
        return None
    target = os.path.realpath(path)
    return None if os.path.commonpath([target, real_root]) == real_root else "outside"


def check_single_file(path: Path) -> None:
    """data.path names one file: it must be a regular one (a FIFO would block)."""
    from charlstm.errors import CorpusError

    reason = _not_regular(str(path))
    if reason == "special":
        raise CorpusError(f"data.path {path} is not a regular file (a FIFO, socket or device)")
    if reason is not None:
        raise CorpusError(f"data.path {path} cannot be read ({REASONS[reason]})")
