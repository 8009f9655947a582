"""Pre-creates and preallocates the next segment in a background thread (etcd file_pipeline).

A cut then only renames a ready file instead of allocating 64 MB while appends wait. The
files are ``0.tmp``/``1.tmp`` (alternating, so a new one never reuses the name of the one
just handed out), created locked and truncated: a stale tmp file from a crash is never
reused with its old contents.
"""

from __future__ import annotations

import os
import threading

from wal.fileutil import PRIVATE_FILE_MODE, LockedFile, preallocate


class FilePipeline:
    __slots__ = ("_count", "_error", "_file", "_thread", "dirpath", "preallocate", "size")

    def __init__(self, dirpath: str, size: int, *, preallocate: bool = True) -> None:
        self.dirpath = dirpath
        self.size = size
        self.preallocate = preallocate
        self._count = 0
        self._file: LockedFile | None = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._start()

    def _start(self) -> None:
        self._file = None
        self._error = None
        self._thread = threading.Thread(target=self._alloc, name="wal-pipeline", daemon=True)
        self._thread.start()

    def _alloc(self) -> None:
        path = os.path.join(self.dirpath, f"{self._count % 2}.tmp")
        self._count += 1
        try:
            f = LockedFile(path, os.O_CREAT | os.O_RDWR, PRIVATE_FILE_MODE)
            try:
                os.ftruncate(f.fd, 0)
                if self.preallocate:
                    preallocate(f.fd, self.size)
            except BaseException:
                f.close()
                raise
            self._file = f
        except BaseException as err:
            self._error = err

    def open(self) -> LockedFile:
        """The next pre-created segment file (locked, at offset 0); starts the one after."""
        assert self._thread is not None, "pipeline closed"
        self._thread.join()
        f, err = self._file, self._error
        self._start()
        if err is not None:
            raise err
        assert f is not None
        return f

    def close(self) -> None:
        """Stop and remove the unused tmp file."""
        if self._thread is None:
            return
        self._thread.join()
        self._thread = None
        f, self._file = self._file, None
        if f is not None:
            try:
                os.remove(f.path)
            except OSError:
                pass
            f.close()
