"""A local PostgreSQL server with PostGIS, for the geospatial jobs on a developer's machine
and in the tests. The embedded pgserver has no PostGIS, so this runs the machine's own
PostgreSQL and PostGIS binaries (Debian: postgresql-15-postgis-3; Homebrew: postgis) in a
data folder of its own (LOCAL_POSTGIS_DIR, .local/postgis), on 127.0.0.1 on a port of its
own, touching no system service.

    server = LocalPostgis(".local/postgis").start()   # reused if already running there
    server.url()                                      # postgresql://postgres@127.0.0.1:P/postgres
    server.stop()                                     # only if this object started it

PostgreSQL refuses to run as root: when this process is root, the server runs as an
unprivileged system user made for it (SERVICE_USER, with useradd --system), which owns
the folder. pg_ctl starts the server in a session of its own: it outlives a process that
dies without stopping it, and the next start in the same folder reuses it.

The app only looks for a running server here (running_port); make serve, make demo, make
postgis and the tests start and stop it.
"""

from __future__ import annotations

import fcntl
import glob
import logging
import os
import pwd
import re
import shutil
import socket
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
SUPERUSER = "postgres"
SERVICE_USER = "geojobs-postgis"
START_TIMEOUT_SECONDS = 30
INSTALL_HINT = ("install PostgreSQL's PostGIS (Debian/Ubuntu: apt-get install "
                "postgresql-15-postgis-3; macOS: brew install postgis), or set "
                "GEO_DATABASE_URL to a PostgreSQL server that has PostGIS")


class LocalPostgisError(Exception):
    """The local PostGIS server cannot be found, started or stopped: `reason` says why,
    `hint` what to install or set."""

    def __init__(self, reason: str, hint: str = INSTALL_HINT):
        super().__init__(f"{reason}; {hint}" if hint else reason)
        self.reason = reason
        self.hint = hint


@dataclass(frozen=True)
class Binaries:
    bin_dir: Path
    share_dir: Path
    version: str  # the major version, e.g. "15"

    def tool(self, name: str) -> str:
        return str(self.bin_dir / name)


def _candidate_bin_dirs() -> list[Path]:
    found: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                                 timeout=10).stdout.strip()
            if out:
                found.append(Path(out))
        except (OSError, subprocess.SubprocessError):
            pass

    def by_version(pattern: str) -> list[Path]:
        paths = glob.glob(pattern)
        number = lambda p: [int(n) for n in re.findall(r"\d+", p)] or [0]  # noqa: E731
        return [Path(p) for p in sorted(paths, key=number, reverse=True)]

    found += by_version("/usr/lib/postgresql/*/bin")                    # Debian, Ubuntu
    for prefix in ("/opt/homebrew", "/usr/local"):                        # Homebrew
        found += by_version(f"{prefix}/opt/postgresql@*/bin")
        found.append(Path(prefix) / "bin")
    unique: list[Path] = []
    for path in found:
        if path not in unique:
            unique.append(path)
    return unique


def _share_dir(bin_dir: Path) -> Optional[Path]:
    pg_config = bin_dir / "pg_config"
    if pg_config.is_file():
        try:
            out = subprocess.run([str(pg_config), "--sharedir"], capture_output=True,
                                 text=True, timeout=10).stdout.strip()
            if out:
                return Path(out)
        except (OSError, subprocess.SubprocessError):
            pass
    debian = re.fullmatch(r"/usr/lib/postgresql/([^/]+)/bin", str(bin_dir))
    if debian:
        return Path("/usr/share/postgresql") / debian.group(1)
    for share in (bin_dir.parent / "share" / "postgresql", bin_dir.parent / "share"):
        if (share / "extension").is_dir():
            return share
    return None


def _major_version(bin_dir: Path) -> str:
    try:
        out = subprocess.run([str(bin_dir / "postgres"), "--version"], capture_output=True,
                             text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    match = re.search(r"\) (\d+)", out) or re.search(r"(\d+)", str(bin_dir))
    return match.group(1) if match else "15"


def find_binaries(bin_dir: Optional[str] = None) -> Binaries:
    """The first PostgreSQL bin folder with initdb, pg_ctl and postgres whose share folder
    has PostGIS (extension/postgis.control): bin_dir alone when given (LOCAL_POSTGIS_BIN_DIR),
    else pg_config's, Debian's and Homebrew's. LocalPostgisError says what is missing."""
    candidates = [Path(bin_dir)] if bin_dir else _candidate_bin_dirs()
    without_postgis: list[tuple[Path, Path, str]] = []
    for directory in candidates:
        if not all(os.access(directory / tool, os.X_OK)
                   for tool in ("initdb", "pg_ctl", "postgres")):
            continue
        share = _share_dir(directory)
        version = _major_version(directory)
        if share is not None and (share / "extension" / "postgis.control").is_file():
            return Binaries(directory, share, version)
        without_postgis.append((directory, share or directory, version))
    if without_postgis:
        directory, share, version = without_postgis[0]
        return _raise(f"PostgreSQL {version} ({directory}) has no PostGIS (no "
                      f"extension/postgis.control in {share})",
                      f"install PostGIS for it (Debian/Ubuntu: apt-get install "
                      f"postgresql-{version}-postgis-3; macOS: brew install postgis), or set "
                      f"GEO_DATABASE_URL to a PostgreSQL server that has PostGIS")
    where = ", ".join(str(c) for c in candidates) or "nowhere"
    setting = " (LOCAL_POSTGIS_BIN_DIR)" if bin_dir else ""
    return _raise(f"no PostgreSQL server binaries (initdb, pg_ctl, postgres) found in "
                  f"{where}{setting}")


def _raise(reason: str, hint: str = INSTALL_HINT) -> Binaries:
    raise LocalPostgisError(reason, hint)


def read_pid_file(data_dir: Path) -> Optional[tuple[int, int]]:
    """(postmaster pid, port) of a server running in data_dir, from its postmaster.pid."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # running as another user
    return pid, port


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((HOST, port)) == 0


def running_port(directory: str | os.PathLike) -> Optional[int]:
    """The port of the local PostGIS server running in directory, or None."""
    found = read_pid_file(Path(directory).resolve() / "data")
    if found is None or not _port_open(found[1]):
        return None
    return found[1]


def local_url(port: int, dbname: str = "postgres") -> str:
    return f"postgresql://{SUPERUSER}@{HOST}:{port}/{dbname}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def ensure_service_user() -> pwd.struct_passwd:
    """The unprivileged user the server runs as when this process is root, made (a system
    user without a home or a login shell) if missing."""
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        pass
    nologin = next((p for p in ("/usr/sbin/nologin", "/sbin/nologin") if os.path.exists(p)),
                   "/bin/false")
    result = subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir",
                             "/nonexistent", "--shell", nologin, SERVICE_USER],
                            capture_output=True, text=True)
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        raise LocalPostgisError(
            f"PostgreSQL refuses to run as root and the user {SERVICE_USER} could not be "
            f"made: {result.stderr.strip() or result.returncode}",
            "run make as an ordinary user, or set GEO_DATABASE_URL") from None


class LocalPostgis:
    """The server in directory: data/ (initdb's), run/ (its socket), postgres.log."""

    def __init__(self, directory: str | os.PathLike, port: int = 0,
                 bin_dir: Optional[str] = None, options: Sequence[str] = (),
                 start_timeout: int = START_TIMEOUT_SECONDS):
        self.directory = Path(directory).resolve()
        self.requested_port = port
        self.bin_dir = bin_dir
        self.options = tuple(options)  # extra "-c name=value" server settings
        self.start_timeout = start_timeout
        self.port: Optional[int] = None
        self.reused = False
        self.started = False
        self.binaries: Optional[Binaries] = None
        self.owner: Optional[pwd.struct_passwd] = None

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def socket_dir(self) -> Path:
        return self.directory / "run"

    @property
    def log_path(self) -> Path:
        return self.directory / "postgres.log"

    def url(self, dbname: str = "postgres") -> str:
        if self.port is None:
            raise LocalPostgisError("the local PostGIS server is not started", "")
        return local_url(self.port, dbname)

    # -- running commands as the server's owner --------------------------------------------
    def _as_owner(self, command: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return command
        assert self.owner is not None
        return ["runuser", "-u", self.owner.pw_name, "--", *command]

    def _run(self, command: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(self._as_owner(command), cwd=self.directory,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout, start_new_session=True)

    def _prepare_directory(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            self.owner = ensure_service_user()
            for path in (self.directory, self.socket_dir):
                os.chown(path, self.owner.pw_uid, self.owner.pw_gid)
            if self.data_dir.exists():
                for root, dirs, files in os.walk(self.data_dir):
                    for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
                        os.lchown(name, self.owner.pw_uid, self.owner.pw_gid)
            reach = self._run(["test", "-w", str(self.directory)], timeout=10)
            if reach.returncode != 0:
                raise LocalPostgisError(
                    f"the server's user {self.owner.pw_name} cannot reach {self.directory} "
                    "(a folder above it is not open to other users)",
                    "set LOCAL_POSTGIS_DIR to a folder it can reach (e.g. under /var/tmp), "
                    "or set GEO_DATABASE_URL")
        os.chmod(self.directory, 0o700)

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """Serializes starts in this folder across processes."""
        self.directory.parent.mkdir(parents=True, exist_ok=True)
        with open(self.directory.parent / f".{self.directory.name}.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- start and stop -------------------------------------------------------------------
    def start(self) -> "LocalPostgis":
        if self.port is not None:
            raise LocalPostgisError("the local PostGIS server is already started", "")
        self.binaries = find_binaries(self.bin_dir)
        with self._lock():
            port = running_port(self.directory)
            if port is not None:
                self.port, self.reused = port, True
                logger.info("using the PostGIS server already running on %s:%d", HOST, port)
                return self
            self._prepare_directory()
            if not (self.data_dir / "PG_VERSION").is_file():
                self._initdb()
            self._start_server()
        logger.info("local PostGIS server (PostgreSQL %s) on %s:%d, data in %s",
                    self.binaries.version, HOST, self.port, self.data_dir)
        return self

    def _initdb(self) -> None:
        assert self.binaries is not None
        shutil.rmtree(self.data_dir, ignore_errors=True)
        result = self._run([self.binaries.tool("initdb"), "-D", str(self.data_dir),
                            "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                            "--locale=C.UTF-8" if _has_c_utf8() else "--no-locale"],
                           timeout=120)
        if result.returncode != 0:
            raise LocalPostgisError(f"initdb failed in {self.data_dir}: "
                                    f"{(result.stderr or result.stdout).strip()[-1500:]}", "")

    def _start_server(self) -> None:
        assert self.binaries is not None
        port = self.requested_port
        if port and _port_open(port):
            raise LocalPostgisError(f"port {port} on {HOST} is taken by another server",
                                    "set LOCAL_POSTGIS_PORT to a free port (0: any)")
        for attempt in range(3):
            chosen = port or _free_port()
            settings = ["-c", "listen_addresses=" + HOST, "-p", str(chosen),
                        "-k", str(self.socket_dir)]
            for option in self.options:
                settings += ["-c", option]
            result = self._run([self.binaries.tool("pg_ctl"), "-D", str(self.data_dir),
                                "-l", str(self.log_path), "-w", "-t", str(self.start_timeout),
                                "-o", " ".join(settings), "start"],
                               timeout=self.start_timeout + 10)
            if result.returncode == 0 and running_port(self.directory) == chosen:
                self.port, self.started = chosen, True
                return
            log = self.log_path.read_text(errors="replace")[-2000:] if \
                self.log_path.exists() else ""
            if "could not bind" in log and not port and attempt < 2:
                continue  # another process took the free port meanwhile
            raise LocalPostgisError(
                f"the local PostGIS server did not start: {result.stderr.strip()}\n{log}", "")

    def stop(self) -> None:
        """Stop the server if this object started it (a reused one is left running). Safe
        to call twice."""
        started, self.started = self.started, False
        self.port, self.reused = None, False
        if started:
            self.stop_server()

    def stop_server(self, mode: str = "fast") -> None:
        """Stop whatever server runs in this folder (also one a dead process left)."""
        if read_pid_file(self.data_dir) is None:
            return
        if self.binaries is None:
            self.binaries = find_binaries(self.bin_dir)
        if os.geteuid() == 0 and self.owner is None:
            self.owner = pwd.getpwuid(self.data_dir.stat().st_uid)
        result = self._run([self.binaries.tool("pg_ctl"), "-D", str(self.data_dir),
                            "-m", mode, "-w", "-t", "30", "stop"], timeout=45)
        if result.returncode != 0 and read_pid_file(self.data_dir) is not None:
            raise LocalPostgisError(f"pg_ctl stop failed: {result.stderr.strip()}", "")
        logger.info("local PostGIS server in %s stopped", self.directory)

    def __enter__(self) -> "LocalPostgis":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _has_c_utf8() -> bool:
    try:
        out = subprocess.run(["locale", "-a"], capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return any(line.lower() in ("c.utf8", "c.utf-8") for line in out.splitlines())

