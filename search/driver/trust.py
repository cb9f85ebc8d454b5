"""Signing the Ray state files a search writes, so `--resume` unpickles only this project's own.

Ray Tune restores an experiment by unpickling files of its folder (`tuner.pkl`, the searcher's
`searcher-state-*.pkl`, the pickles embedded in `experiment_state-*.json` and
`search_gen_state-*.json`); experiment folders travel (shared storage, a colleague's run, a
bucket), and a replaced pickle would run its code on restore. So every time Tune saves its state,
`SigningCallback` records a SHA-256 of each such file as this process wrote it, in
`twobirds-trust.json` beside them, authenticated with an HMAC under a key that never enters the
folder (`~/.config/twobirds/trust.key`, 0600; `TWOBIRDS_CONFIG_DIR` moves it), as Jupyter signs
trusted notebooks. Before a resume `verify` refuses a folder whose state files are not all
listed there, unless the user passes --trust.

The last few versions of each file are kept: Tune copies its state to the storage in the
background, so for a moment a killed driver may leave the older version behind.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

from ..spec import SearchError
from .files import MANIFEST, write_private

KEY_FILE = "trust.key"
CONFIG_ENV = "TWOBIRDS_CONFIG_DIR"
# Top-level files of an experiment folder that Tune unpickles (or that embed pickles) on restore.
STATE_PATTERNS = ("*.pkl", "experiment_state-*.json", "search_gen_state-*.json", "callback-states-*")
VERSIONS_KEPT = 4


class UntrustedExperiment(SearchError):
    """An experiment folder whose Ray state this project did not write (or that changed since)."""


def config_dir() -> Path:
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV]).expanduser()
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config").expanduser() / "twobirds"


def key_path() -> Path:
    return config_dir() / KEY_FILE


def load_key(create: bool = False) -> bytes | None:
    """The signing key; with create=True a new random one is made (0600) if there is none."""
    path = key_path()
    if not path.is_file():
        if not create:
            return None
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(path, secrets.token_hex(32))  # atomic: a search starting beside it never reads it empty
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)  # a key others can read signs nothing
    return path.read_bytes().strip()


def is_state_file(name: str) -> bool:
    return name != MANIFEST and any(fnmatch.fnmatch(name, p) for p in STATE_PATTERNS)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _mac(key: bytes, files: dict) -> str:
    body = json.dumps(files, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


class Folder:
    """An experiment folder on a pyarrow filesystem (local, NFS, s3://, gs://)."""

    def __init__(self, fs, root: str):
        self.fs, self.root = fs, root.rstrip("/")

    def names(self) -> list[str]:
        import pyarrow.fs

        selector = pyarrow.fs.FileSelector(self.root, recursive=False, allow_not_found=True)
        infos = self.fs.get_file_info(selector)
        return sorted(Path(i.path).name for i in infos if i.type == pyarrow.fs.FileType.File)

    def read(self, name: str) -> bytes | None:
        try:
            with self.fs.open_input_stream(f"{self.root}/{name}") as stream:
                return stream.readall()
        except (FileNotFoundError, OSError):
            return None

    def write(self, name: str, data: bytes) -> None:
        tmp = f"{self.root}/.{name}.{secrets.token_hex(4)}.tmp"
        with self.fs.open_output_stream(tmp) as out:
            out.write(data)
        self.fs.move(tmp, f"{self.root}/{name}")


def read_manifest(folder: Folder, key: bytes | None) -> dict[str, list[str]] | None:
    """{file: [digests]} if the folder's manifest is intact under `key`, else None."""
    raw = folder.read(MANIFEST)
    if raw is None or key is None:
        return None
    try:
        manifest = json.loads(raw)
        files, mac = manifest["files"], manifest["mac"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(files, dict) or not hmac.compare_digest(str(mac), _mac(key, files)):
        return None
    return {str(k): [str(d) for d in v] for k, v in files.items() if isinstance(v, list)}


def record(folder: Folder, new: dict[str, str], key: bytes, known: dict[str, list[str]]) -> dict[str, list[str]]:
    """Add digests (file -> digest of the content written) to `known` and write the signed manifest."""
    files = {name: list(versions) for name, versions in known.items()}
    for name, value in new.items():
        versions = [d for d in files.get(name, []) if d != value] + [value]
        files[name] = versions[-VERSIONS_KEPT:]
    folder.write(MANIFEST, json.dumps({"files": files, "mac": _mac(key, files)}, indent=1).encode())
    return files


def storage_folder(storage, name: str) -> Folder:
    return Folder(storage.fs, storage.fs_path(name))


def sign_folder(storage, name: str, only: tuple[str, ...] | None = None) -> None:
    """Sign the folder's state files as they are now (after this process wrote them, or on --trust)."""
    folder = storage_folder(storage, name)
    key = load_key(create=True)
    known = read_manifest(folder, key) or {}
    names = [n for n in folder.names() if is_state_file(n) and (only is None or n in only)]
    new = {n: digest(data) for n in names if (data := folder.read(n)) is not None}
    record(folder, new, key, known)


def staged_digests(staging) -> tuple[dict[str, str], int]:
    """{file: digest} of the state files in Tune's driver staging folder, and their total size in bytes.

    The staging folder is local and private to this process (Tune writes its state there, then copies
    it to the storage), so what it holds is what this process wrote, whatever the storage holds now."""
    digests, size = {}, 0
    folder = Path(staging) if staging else None
    for path in folder.iterdir() if folder is not None and folder.is_dir() else []:
        if path.is_file() and is_state_file(path.name):
            data = path.read_bytes()
            digests[path.name], size = digest(data), size + len(data)
    return digests, size


def sign_staged(storage, name: str, staging) -> None:
    """Sign the state files this process wrote (its staging copies), never the storage's own files."""
    new, _ = staged_digests(staging)
    if new:
        folder, key = storage_folder(storage, name), load_key(create=True)
        record(folder, new, key, read_manifest(folder, key) or {})


def verify(storage, name: str, action: str = "--resume") -> None:
    """Refuse (UntrustedExperiment, one line) unless every state file of the folder is one this project signed."""
    folder, refuse = storage_folder(storage, name), _Refusal(storage, name, action)
    known = refuse.unless_signed(folder)
    for file in folder.names():
        if not is_state_file(file):
            continue
        data = folder.read(file)
        if file not in known or data is None or digest(data) not in known[file]:
            raise refuse.file(file)


def signed_reads(storage, name: str, action: str = "--resume"):
    """check(file, data) for compat.checked_state_reads: refuse bytes Tune is about to unpickle unless the
    folder's manifest signs them under `file` (a name or a pattern). `verify` refuses early, before Ray
    starts; this refuses the bytes actually read, so a file swapped since then never runs."""
    folder, refuse = storage_folder(storage, name), _Refusal(storage, name, action)

    def check(file: str, data: bytes) -> None:
        known = refuse.unless_signed(folder)
        signed = {d for each, versions in known.items() if fnmatch.fnmatch(each, file) for d in versions}
        if digest(data) not in signed:
            raise refuse.file(file)

    return check


class _Refusal:
    """The one-line refusals of a folder whose state files this project did not sign."""

    def __init__(self, storage, name: str, action: str):
        self.action, self.where = action, storage.experiment(name)
        self.fix = (
            "pass --trust to resume it anyway if you trust whoever wrote the folder (its pickles will run)"
            if action == "--resume"
            else "only folders this project signed with your key are unpickled"
        )

    def unless_signed(self, folder: Folder) -> dict[str, list[str]]:
        """The folder's manifest, if it is intact under this machine's key; else UntrustedExperiment."""
        action, where, fix = self.action, self.where, self.fix
        key = load_key()
        if key is None:
            raise UntrustedExperiment(
                f"{action}: {where} was not written by a search of this user on this machine (no key {key_path()}), "
                f"so its Ray state files are not unpickled; {fix}"
            )
        if folder.read(MANIFEST) is None:
            raise UntrustedExperiment(
                f"{action}: {where} has no {MANIFEST}: its Ray state files were not signed by this project, "
                f"so they are not unpickled; {fix}"
            )
        known = read_manifest(folder, key)
        if known is None:
            raise UntrustedExperiment(
                f"{action}: {where}/{MANIFEST} does not match this machine's key {key_path()} (another user's "
                f"or machine's run, or edited); its Ray state files are not unpickled; {fix}"
            )
        return known

    def file(self, file: str) -> UntrustedExperiment:
        return UntrustedExperiment(
            f"{self.action}: {self.where}/{file} is not the file this project's search wrote (changed or added "
            f"since); it is not unpickled; {self.fix}"
        )
