"""Run folders: the one checkpoint-and-resume mechanism of every long job.

A run folder holds one job's state (a training stage, a metadynamics run, a stability
ensemble, ...). It is opened with :class:`RunFolder`, which

* takes an **exclusive lock** (``.lock``, an OS file lock released when the process ends,
  however it ends): a second process aiming at the same folder stops with a clear message;
* records a **fingerprint** in ``run.json``: the kind of job, the resolved settings that
  decide its result and a SHA-256 digest of every input (model files, data files, decks,
  structures). Running the same command again **resumes**; a run whose settings or inputs
  changed is refused with a message naming every change. Settings that only extend or
  schedule a run (more epochs, more steps, more trajectories, threads) may change. An input
  that can be rebuilt equal up to rounding with another digest (training data made again on
  another CPU) names a check that decides, and an accepted digest is recorded;
* **starts over** only when asked (``start_over=True``, ``--start-over`` on the command line):
  the old folder is moved aside to ``NAME.old-N``, never deleted; a folder without
  ``run.json`` that holds files is not a run and is never touched;
* writes every state file **atomically** (:meth:`RunFolder.atomic`: a temporary file, then a
  rename), so a crash leaves the old file or the new one.

Each job writes its state so that one file is the commit point (``last.pt``,
``state.json``, a line of ``trajectories.jsonl``) and everything else can be rebuilt from
it on resume; :meth:`RunFolder.after_write` marks every write point (a no-op that the
fault-injection tests replace with a crash).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path

from .files import atomic_path, make_folder

RUN_FILE = "run.json"
LOCK_FILE = ".lock"


class RunFolderError(ValueError):
    """A run folder that cannot be used as asked (in use, changed settings, not a run)."""


def _hash_file(path: Path, h) -> None:
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)


def file_digest(path) -> str:
    """``sha256:...`` of a file's bytes, or of a folder's files (names and contents, in
    sorted order). ``pretrained:NAME`` is resolved to the shipped checkpoint."""
    from .pretrained import resolve_checkpoint
    p = resolve_checkpoint(path)
    if not p.exists():
        raise FileNotFoundError(f"input not found: {p}")
    h = hashlib.sha256()
    if p.is_dir():
        for f in sorted(q for q in p.rglob("*") if q.is_file()):
            h.update(str(f.relative_to(p)).encode() + b"\0")
            _hash_file(f, h)
    else:
        _hash_file(p, h)
    return "sha256:" + h.hexdigest()


def bytes_digest(*parts: bytes) -> str:
    """``sha256:...`` of byte strings (arrays' ``tobytes()``, JSON text, ...)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
        h.update(b"\0")
    return "sha256:" + h.hexdigest()


def calculator_digest(calc) -> str:
    """``sha256:...`` identifying a calculator: its own ``fingerprint()`` if it has one (an
    ``FFPTCalculator``: its weights; a ``QForceCalculator``: its parameter table), else its
    class and ASE settings (``todict()``)."""
    own = getattr(calc, "fingerprint", None)
    if callable(own):
        return own()
    params = calc.todict() if hasattr(calc, "todict") else {}
    return bytes_digest(type(calc).__name__.encode(),
                        json.dumps(params, sort_keys=True, default=str).encode())


def atoms_digest(atoms) -> str:
    """``sha256:...`` of a structure: atomic numbers, positions, cell and periodicity."""
    import numpy as np
    return bytes_digest(np.asarray(atoms.numbers, np.int64).tobytes(),
                        np.asarray(atoms.positions, np.float64).tobytes(),
                        np.asarray(atoms.cell[:], np.float64).tobytes(),
                        np.asarray(atoms.pbc, bool).tobytes())


def plain(value):
    """``value`` as JSON would give it back (tuples become lists, paths strings), so that
    a fingerprint compares equal to the one read from ``run.json``."""
    return json.loads(json.dumps(value, default=str))


def describe_changes(old: dict, new: dict, prefix: str = "") -> list:
    """``["lr: 0.0001 -> 0.001", ...]`` for every key whose value differs."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "(absent)"), new.get(key, "(absent)")
        if isinstance(a, dict) and isinstance(b, dict):
            out += describe_changes(a, b, f"{prefix}{key}.")
        elif a != b:
            if isinstance(a, str) and a.startswith("sha256:"):
                a, b = a[7:19] + "...", str(b)[7:19] + "..."
                out.append(f"{prefix}{key} (content changed: {a} -> {b})")
            else:
                out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


@contextmanager
def file_lock(lock_path: Path, what: str):
    """Hold an exclusive, non-blocking OS lock on ``lock_path`` (created if needed; holds
    the owner's pid). Another holder gives a :class:`RunFolderError` naming ``what``."""
    import fcntl
    lock_path = Path(lock_path)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise RunFolderError(f"{what} is in use by another process (pid {owner}); wait "
                                 f"for it to finish or choose another output") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def move_aside(path: Path) -> Path | None:
    """Rename the run folder ``path`` to ``path.old-N`` (the first free N); returns the new
    name, or None if there was nothing to move. Refuses folders that are not runs and runs
    in use."""
    path = Path(path)
    if not path.exists():
        return None
    if not path.is_dir() or not (path / RUN_FILE).exists():
        if path.is_dir() and not any(path.iterdir()):
            return None
        raise RunFolderError(f"{path} is not an ffpt-ase run folder (no {RUN_FILE}); it is "
                             f"left untouched: choose another output folder")
    with file_lock(path / LOCK_FILE, str(path)):
        return _rename_to_free(path, lambda n: f"{path.name}.old-{n}")


def move_aside_file(path: Path) -> Path | None:
    """Rename the file ``path`` to ``STEM.old-N.SUFFIX`` (the first free N); returns the new
    name, or None if there was none."""
    path = Path(path)
    if not path.exists():
        return None
    return _rename_to_free(path, lambda n: f"{path.stem}.old-{n}{path.suffix}")


def _rename_to_free(path: Path, name_of) -> Path:
    """Rename ``path`` to ``name_of(n)`` beside it, for the first n = 1, 2, ... not taken."""
    n = 1
    while path.with_name(name_of(n)).exists():
        n += 1
    target = path.with_name(name_of(n))
    path.rename(target)
    return target


class RunFolder:
    """One job's folder: lock, fingerprint, resume or refuse, atomic writes.

    ``kind``: the job ("train", "metad", ...); ``settings``: resolved settings that decide
    the result; ``inputs``: ``{name: digest}`` of the input files or objects
    (:func:`file_digest`, :func:`bytes_digest`); ``free``: settings recorded for information
    that a resumed run may change (e.g. the number of epochs or steps). ``regenerated``:
    ``{input name: check}`` for inputs that may come back with another digest yet be the
    same (data rebuilt on another machine, equal up to rounding): when only such inputs
    changed, ``check(folder)`` decides, returning a note (the run resumes, the note is
    logged, kept in ``notes`` and recorded in ``run.json`` with the new digest) or raising
    :class:`RunFolderError` with the reason (given beside the change in the refusal).

    Use as a context manager; ``resumed`` says whether an earlier run's state is there.
    """

    def __init__(self, path, kind: str, settings: dict, inputs: dict | None = None,
                 free: dict | None = None, start_over: bool = False,
                 regenerated: dict | None = None):
        self.path = Path(path)
        self.kind = kind
        self.fingerprint = plain({"kind": kind, "settings": settings, "inputs": inputs or {}})
        self.free = plain(free or {})
        self.start_over = start_over
        self.regenerated = dict(regenerated or {})
        self.moved_to: Path | None = None
        self.resumed = False
        self.notes: list = []
        self._lock = None

    # ------------------------------------------------------------------ opening
    def __enter__(self) -> "RunFolder":
        if self.start_over:
            self.moved_to = move_aside(self.path)
        if self.path.exists() and not self.path.is_dir():
            raise RunFolderError(f"{self.path} is a file, not a run folder")
        self._refuse_foreign()  # before the lock file is made in a folder that is not ours
        make_folder(self.path)
        self._lock = file_lock(self.path / LOCK_FILE, str(self.path))
        self._lock.__enter__()
        try:
            self._check_or_create()
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        self._lock.__exit__(*exc)
        return False

    def _check_or_create(self) -> None:
        record_file = self.path / RUN_FILE
        if record_file.exists():
            try:
                record = json.loads(record_file.read_text())
                old = {k: record[k] for k in ("kind", "settings", "inputs")}
            except (ValueError, KeyError) as err:
                raise RunFolderError(f"{record_file} is damaged ({err}); move the folder "
                                     f"aside or use --start-over") from err
            changes = describe_changes(old, self.fingerprint)
            if changes:
                try:
                    changes = self._accept_regenerated(old, record, changes)
                except RunFolderError as reason:   # a check refused: why, beside the change
                    changes = [f"{'; '.join(changes)}: {reason}"]
            if changes:
                raise RunFolderError(
                    f"{self.path} holds a run with other settings or inputs "
                    f"({'; '.join(changes)}); rerun with the same ones to resume, or use "
                    f"--start-over (moves the old run to {self.path.name}.old-N)")
            self.resumed = True
            return
        self._refuse_foreign()
        from . import __version__
        self.write_json(RUN_FILE, {
            **self.fingerprint, "free_settings_at_start": self.free,
            "created": datetime.datetime.now().isoformat(timespec="seconds"),
            "ffpt_ase_version": __version__, "command": sys.argv})

    def _accept_regenerated(self, old: dict, record: dict, changes: list) -> list:
        """The changes left once the :attr:`regenerated` inputs that changed are judged by
        their checks (``changes`` as they were when any other setting or input changed too,
        or no check applies); records each accepted one in ``run.json``."""
        inputs, old_inputs = self.fingerprint["inputs"], old["inputs"]
        changed = [n for n in self.regenerated
                   if n in old_inputs and n in inputs and old_inputs[n] != inputs[n]]
        rest = {**self.fingerprint, "inputs": {**inputs, **{n: old_inputs[n] for n in changed}}}
        if not changed or describe_changes(old, rest):
            return changes
        for name in changed:
            known = record.get("regenerated", {}).get(name, {})
            if inputs[name] in known:       # accepted at an earlier resume
                self.notes.append(known[inputs[name]])
                continue
            note = self.regenerated[name](self.path)
            self.notes.append(note)
            record.setdefault("regenerated", {}).setdefault(name, {})[inputs[name]] = note
            self.write_json(RUN_FILE, record)
        return []

    def _refuse_foreign(self) -> None:
        if not self.path.is_dir() or (self.path / RUN_FILE).exists():
            return
        others = [p.name for p in self.path.iterdir() if p.name != LOCK_FILE]
        if others:
            raise RunFolderError(
                f"{self.path} is not an ffpt-ase run folder (no {RUN_FILE}) but holds "
                f"{len(others)} file(s), e.g. {sorted(others)[0]}; it is left untouched: "
                f"choose another output folder")

    # ------------------------------------------------------------------ writing
    @contextmanager
    def atomic(self, name: str):
        """Yield a temporary path for the file ``name``; it replaces the file when the block
        ends without error."""
        with atomic_path(self.path / name) as tmp:
            yield tmp
        self.after_write(name)

    def write_text(self, name: str, text: str) -> Path:
        with self.atomic(name) as tmp:
            tmp.write_text(text)
        return self.path / name

    def write_json(self, name: str, obj) -> Path:
        return self.write_text(name, json.dumps(obj, indent=1, default=str) + "\n")

    def append_line(self, name: str, line: str) -> None:
        """Append one line (a record of a ``.jsonl`` file), flushed to the disk."""
        with open(self.path / name, "a") as fh:
            fh.write(line.rstrip("\n") + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.after_write(name)

    def read_json(self, name: str):
        """A JSON state file, or None if absent; a damaged one is an error naming it."""
        path = self.path / name
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except ValueError as err:
            raise RunFolderError(f"{path} is damaged ({err}); use --start-over") from err

    def read_lines(self, name: str) -> list:
        """Records of a ``.jsonl`` file; a torn last line (a crash while appending) is
        dropped and the file rewritten without it, a damaged earlier one is an error."""
        path = self.path / name
        if not path.exists():
            return []
        lines = path.read_text().splitlines()
        records = []
        for k, line in enumerate(lines):
            try:
                records.append(json.loads(line))
            except ValueError:
                if k == len(lines) - 1:
                    self.write_text(name, "".join(json.dumps(r) + "\n" for r in records))
                    break
                raise RunFolderError(f"{path} line {k + 1} is damaged; use --start-over"
                                     ) from None
        return records

    def after_write(self, name: str) -> None:
        """Called after every write of the run's files: the write points. A no-op; the
        fault-injection tests replace it to crash the job there."""
