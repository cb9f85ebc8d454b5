"""Where experiments live: a local or NFS folder, or an s3:// / gs:// URI, read and written through pyarrow."""

from __future__ import annotations

from pathlib import Path


class Storage:
    """Where experiments live: a local/NFS folder or an s3:// / gs:// URI, written through pyarrow."""

    def __init__(self, storage: str):
        import pyarrow.fs

        storage = str(storage)
        self.is_uri = "://" in storage
        if self.is_uri:
            self.fs, self.root = pyarrow.fs.FileSystem.from_uri(storage)
            self.path = storage.rstrip("/")  # what Tune's RunConfig(storage_path=...) gets
        else:
            self.path = str(Path(storage).expanduser().resolve())
            self.fs, self.root = pyarrow.fs.LocalFileSystem(), self.path

    def experiment(self, name: str) -> str:
        return f"{self.path}/{name}"

    def fs_path(self, name: str, file: str | None = None) -> str:
        return "/".join(p for p in (self.root.rstrip("/"), name, file) if p)

    def exists(self, name: str, file: str | None = None) -> bool:
        import pyarrow.fs

        return self.fs.get_file_info(self.fs_path(name, file)).type != pyarrow.fs.FileType.NotFound

    def write(self, name: str, file: str, data: bytes | str) -> None:
        self.fs.create_dir(self.fs_path(name), recursive=True)
        with self.fs.open_output_stream(self.fs_path(name, file)) as out:
            out.write(data.encode() if isinstance(data, str) else data)

    def read_text(self, name: str, file: str) -> str:
        with self.fs.open_input_stream(self.fs_path(name, file)) as stream:
            return stream.readall().decode()
