"""Private, throw-away PostgreSQL and Redis servers for tests.

Every server started here is a child process of the test run, listens on
127.0.0.1 on a free port, keeps its data in its own temporary directory and
can be stopped, SIGKILLed and restarted (same port, same data) by fault tests
without touching any system-wide service.

Public API
----------
* ``find_postgres_bin() -> Path | None``  directory holding initdb/postgres
* ``find_redis_server() -> Path | None``  the redis-server executable
* ``require_or_skip(reason)``             skip locally, fail when ``CI`` is set
* ``PostgresServer`` / ``RedisServer``    start/stop/kill/restart/is_running/cleanup
* ``ServerError``                         raised when a server cannot be started

PostgreSQL refuses to run as root.  When the tests run as root, initdb and the
postmaster are run as the ``postgres`` system user (override with the
``PGTEST_USER`` environment variable; ``nobody`` is the last resort) and the
temporary directory is handed over to that user.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = [
    "PostgresServer",
    "RedisServer",
    "ServerError",
    "find_postgres_bin",
    "find_redis_server",
    "require_or_skip",
]

DEFAULT_TIMEOUT = 30.0
_HOST = "127.0.0.1"
_POLL = 0.02
_LOG_TAIL_LINES = 40
_FALSY = {"", "0", "false", "no", "off", "n", "f"}


class ServerError(RuntimeError):
    """A test server could not be initialised, started or stopped."""


# --------------------------------------------------------------------------
# skip / fail policy
# --------------------------------------------------------------------------


def _ci_enabled() -> bool:
    return os.environ.get("CI", "").strip().lower() not in _FALSY


def require_or_skip(reason: str) -> None:
    """Skip the current test locally; fail it when ``CI`` is set to a true value.

    A missing server binary must never make CI silently green.
    """
    import pytest  # imported lazily: this module is usable outside pytest

    if _ci_enabled():
        pytest.fail(f"{reason} (CI is set, refusing to skip)", pytrace=False)
    pytest.skip(reason)


# --------------------------------------------------------------------------
# binary discovery
# --------------------------------------------------------------------------


def _version_key(path: Path) -> tuple[int, ...]:
    # /usr/lib/postgresql/<version>/bin
    return tuple(int(p) for p in re.findall(r"\d+", path.parent.name)) or (0,)


def _is_pg_bindir(path: Path) -> bool:
    return all(os.access(path / exe, os.X_OK) for exe in ("initdb", "postgres"))


def find_postgres_bin() -> Path | None:
    """Return the directory containing ``initdb`` and ``postgres``, or None.

    Order: ``$PG_BINDIR``; the newest ``/usr/lib/postgresql/*/bin`` (and
    ``/usr/pgsql-*/bin``); ``pg_config --bindir``; ``initdb`` on ``PATH``.
    Wrapper scripts such as Debian's ``/usr/bin/pg_ctl`` are deliberately not
    preferred: the versioned directory holds the real binaries.
    """
    env = os.environ.get("PG_BINDIR")
    if env and _is_pg_bindir(Path(env)):
        return Path(env)

    candidates: list[Path] = []
    for pattern_root, pattern in (("/usr/lib/postgresql", "*/bin"), ("/usr", "pgsql-*/bin")):
        root = Path(pattern_root)
        if root.is_dir():
            candidates.extend(sorted(root.glob(pattern), key=_version_key, reverse=True))
    for cand in candidates:
        if _is_pg_bindir(cand):
            return cand

    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out and _is_pg_bindir(Path(out)):
            return Path(out)

    initdb = shutil.which("initdb")
    if initdb:
        cand = Path(initdb).resolve().parent
        if _is_pg_bindir(cand):
            return cand
    return None


def find_redis_server() -> Path | None:
    """Return the ``redis-server`` executable, or None (``$REDIS_SERVER`` overrides)."""
    env = os.environ.get("REDIS_SERVER")
    candidates = [env] if env else []
    candidates += [
        shutil.which("redis-server"),
        "/usr/bin/redis-server",
        "/usr/local/bin/redis-server",
    ]
    for cand in candidates:
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return Path(cand)
    return None


# --------------------------------------------------------------------------
# ports
# --------------------------------------------------------------------------

_handed_out_ports: set[int] = set()


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((_HOST, port))
        except OSError:
            return False
    return True


def _ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """Pick a free TCP port on 127.0.0.1.

    Ports are preferably taken *below* the kernel's ephemeral range: a server
    that is stopped during a fault test must be able to re-bind the same port,
    which could fail if the kernel meanwhile handed that port to an outgoing
    connection.  Falls back to binding port 0.  A race with another process is
    still possible; the servers retry with a new port on their first start.
    """
    lo, _ = _ephemeral_range()
    if lo > 11000:
        rng = random.Random()
        for _ in range(50):
            port = rng.randrange(10000, lo)
            if port not in _handed_out_ports and _port_is_free(port):
                _handed_out_ports.add(port)
                return port
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((_HOST, 0))
            port = s.getsockname()[1]
        if port not in _handed_out_ports:
            _handed_out_ports.add(port)
            return port
    raise ServerError("could not find a free TCP port")


def _tcp_connectable(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((_HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------
# process helpers (Linux /proc based)
# --------------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, starttime) of a process, or None if it does not exist."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    fields = data[data.rfind(")") + 2 :].split()
    # fields[0]=state, [1]=ppid, [19]=starttime
    try:
        return fields[0], int(fields[1]), int(fields[19])
    except (IndexError, ValueError):
        return None


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None and st[1] == pid:
                kids.append(int(entry))
    return kids


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    todo = [pid]
    while todo:
        for kid in _children(todo.pop()):
            out.append(kid)
            todo.append(kid)
    return out


def _gone(pid: int, starttime: int | None) -> bool:
    st = _stat(pid)
    return st is None or st[0] in ("Z", "X") or (starttime is not None and st[2] != starttime)


def _wait_gone(procs: Iterable[tuple[int, int | None]], timeout: float) -> list[int]:
    pending = list(procs)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        pending = [(pid, st) for pid, st in pending if not _gone(pid, st)]
        if pending:
            time.sleep(_POLL)
    return [pid for pid, _ in pending]


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _kill_tree(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGKILL ``proc`` and every descendant, then wait until all are gone.

    The parent is SIGSTOPped first so that it cannot fork while its children
    are being collected (PostgreSQL backends run in their own sessions, so a
    process-group kill would miss them).
    """
    if proc.poll() is not None:
        return
    pid = proc.pid
    _signal(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        st = _stat(pid)
        if st is None or st[0] in ("T", "t", "Z", "X"):
            break
        time.sleep(0.005)
    victims = []
    for kid in _descendants(pid):
        st = _stat(kid)
        if st is not None:
            victims.append((kid, st[2]))
    _signal(pid, signal.SIGKILL)
    for kid, _ in victims:
        _signal(kid, signal.SIGKILL)
    proc.wait(timeout=timeout)
    left = _wait_gone(victims, timeout)
    if left:
        raise ServerError(f"processes {left} survived SIGKILL")


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            text = fh.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"<log {path} unreadable: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def _pdeathsig_prefix() -> list[str]:
    """``setpriv --pdeathsig KILL --`` so servers die if the test run is SIGKILLed.

    Only used when spawning from the main thread: the parent-death signal is
    tied to the *thread* that forked, and a worker thread (e.g. an asyncio
    executor) exiting would otherwise kill the server.
    """
    if threading.current_thread() is not threading.main_thread():
        return []
    setpriv = _SETPRIV
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


def _find_setpriv() -> str | None:
    path = shutil.which("setpriv")
    if not path:
        return None
    try:
        res = subprocess.run(
            [path, "--pdeathsig", "KILL", "--", "true"],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return path if res.returncode == 0 else None


_SETPRIV = _find_setpriv() if os.name == "posix" and Path("/proc/self/stat").exists() else None


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(LC_ALL="C", LANG="C")
    env.update(extra)
    return env


# --------------------------------------------------------------------------
# registry: last-resort cleanup at interpreter exit
# --------------------------------------------------------------------------

_live: set[_Server] = set()
_live_lock = threading.Lock()


@atexit.register
def _cleanup_all() -> None:
    with _live_lock:
        servers = list(_live)
    for server in servers:
        with contextlib.suppress(Exception):
            server.cleanup()


class _Server:
    """Common process bookkeeping for the two server kinds."""

    kind = "server"

    def __init__(
        self,
        *,
        port: int | None,
        base_dir: str | os.PathLike | None,
        startup_timeout: float,
    ):
        self.root = Path(tempfile.mkdtemp(prefix=f"{self.kind}test-", dir=base_dir))
        self.logfile = self.root / f"{self.kind}.log"
        self.port: int | None = port
        self._fixed_port = port is not None
        self._ever_started = False
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        with _live_lock:
            _live.add(self)

    # -- to be provided by subclasses ------------------------------------
    def _command(self) -> list[str]:
        raise NotImplementedError

    def _popen_kwargs(self) -> dict:
        return {}

    def _ready(self) -> bool:
        raise NotImplementedError

    def _stop_signal(self) -> int:
        raise NotImplementedError

    def _after_kill(self) -> None:
        pass

    # -- lifecycle -------------------------------------------------------
    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        return _tail(self.logfile, lines)

    def _spawn(self) -> None:
        with open(self.logfile, "ab") as log:
            log.write(f"\n===== {self.kind} starting on port {self.port} =====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                _pdeathsig_prefix() + self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                start_new_session=True,  # a terminal ^C must not reach the server
                close_fds=True,
                **self._popen_kwargs(),
            )

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self.proc.poll() is not None:
                self.proc.wait()
                raise ServerError(
                    f"{self.kind} exited with code {self.proc.returncode} during startup "
                    f"(port {self.port}, dir {self.root}); log tail:\n{self.log_tail()}"
                )
            if self._ready():
                return
            if time.monotonic() > deadline:
                self._kill_quietly()
                raise ServerError(
                    f"{self.kind} not ready after {self.startup_timeout:.0f}s "
                    f"(port {self.port}, dir {self.root}); log tail:\n{self.log_tail()}"
                )
            time.sleep(_POLL)

    def _bind_failed(self) -> bool:
        tail = self.log_tail(15).lower()
        return "address already in use" in tail or "could not bind" in tail

    def start(self) -> None:
        """Start the server (no-op if running) and wait until it accepts connections."""
        if self.is_running():
            return
        self._prepare()
        attempts = 1 if (self._fixed_port or self._ever_started) else 5
        for attempt in range(attempts):
            if self.port is None:
                self.port = free_port()
            self._spawn()
            try:
                self._wait_ready()
            except ServerError:
                retry = attempt + 1 < attempts and self._bind_failed()
                if not retry:
                    raise
                self.port = None
                continue
            self._ever_started = True
            return

    def _prepare(self) -> None:
        pass

    def stop(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Clean shutdown; escalates to SIGKILL if it takes longer than ``timeout``."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            _signal(proc.pid, self._stop_signal())
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_tree(proc)
                self._after_kill()
        proc.wait()

    def kill(self) -> None:
        """SIGKILL the server and all its child processes (simulated crash)."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            _kill_tree(proc)
            self._after_kill()
        proc.wait()

    def _kill_quietly(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(Exception):
                _kill_tree(self.proc)
                self._after_kill()
            with contextlib.suppress(Exception):
                self.proc.wait(timeout=5)

    def restart(self) -> None:
        """Stop (if running) and start again on the same port with the same data."""
        self.stop()
        self.start()

    def ensure_running(self) -> None:
        """Start the server if a previous test left it stopped or killed."""
        if not self.is_running():
            self.start()

    def cleanup(self) -> None:
        """Stop the server and delete its temporary directory."""
        try:
            try:
                self.stop(timeout=10)
            except Exception:
                self._kill_quietly()
            if self.root.exists():
                shutil.rmtree(self.root, ignore_errors=True)
        finally:
            with _live_lock:
                _live.discard(self)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<{type(self).__name__} port={self.port} {state} dir={self.root}>"


# --------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def _quote_ident(name: str) -> str:
    if not _IDENT.match(name):
        raise ValueError(f"unsafe database name {name!r}")
    return f'"{name}"'


def _resolve_run_as() -> pwd.struct_passwd | None:
    """The unprivileged account to run PostgreSQL as, or None when not root."""
    if os.geteuid() != 0:
        return None
    names = [os.environ["PGTEST_USER"]] if os.environ.get("PGTEST_USER") else ["postgres", "nobody"]
    for name in names:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise ServerError(f"running as root but none of the users {names} exists to run PostgreSQL")


class PostgresServer(_Server):
    """A private PostgreSQL cluster (initdb'd on first start, fsync off)."""

    kind = "postgres"

    def __init__(
        self,
        bindir: str | os.PathLike | None = None,
        *,
        port: int | None = None,
        base_dir: str | os.PathLike | None = None,
        settings: dict[str, str] | None = None,
        startup_timeout: float = DEFAULT_TIMEOUT,
    ):
        found = Path(bindir) if bindir is not None else find_postgres_bin()
        if found is None or not _is_pg_bindir(found):
            raise ServerError(f"PostgreSQL binaries (initdb, postgres) not found (bindir={found})")
        self.bindir = found
        self._run_as = _resolve_run_as()
        super().__init__(port=port, base_dir=base_dir, startup_timeout=startup_timeout)
        self.datadir = self.root / "data"
        self.sockdir = self.root
        # synchronous_commit stays "on": with fsync=off a commit only costs a
        # write() into the page cache, but it makes every acknowledged commit
        # survive kill() (SIGKILL).  With "off" the WAL of the last ~600 ms sits
        # in shared memory and is lost on a crash, so fault tests would flake.
        self.settings = {
            "synchronous_commit": "on",
            "max_connections": "200",
            **(settings or {}),
        }
        self._initialized = False
        self._stale_shm: int | None = None
        if self._run_as is not None:
            # mkdtemp made a 0700 root-owned dir: hand it to the server user.
            os.chown(self.root, self._run_as.pw_uid, self._run_as.pw_gid)
        self.version = self._server_version()

    def _server_version(self) -> int:
        out = subprocess.run(
            [str(self.bindir / "postgres"), "--version"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
        m = re.search(r"(\d+)", out.split(")", 1)[-1])
        return int(m.group(1)) if m else 0

    def _popen_kwargs(self) -> dict:
        kw: dict = {"env": _clean_env(HOME=str(self.root))}
        if self._run_as is not None:
            kw.update(user=self._run_as.pw_uid, group=self._run_as.pw_gid, extra_groups=[])
        return kw

    def _prepare(self) -> None:
        if self._initialized:
            return
        res = subprocess.run(
            [
                str(self.bindir / "initdb"),
                "-D", str(self.datadir),
                "-A", "trust",
                "-U", "postgres",
                "-E", "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=self.root,
            timeout=120,
            check=False,
            **self._popen_kwargs(),
        )  # fmt: skip
        if res.returncode != 0:
            raise ServerError(
                f"initdb failed (rc={res.returncode}, dir {self.datadir}):\n"
                + res.stdout.decode("utf-8", "replace")[-4000:]
            )
        self._initialized = True

    def _command(self) -> list[str]:
        cmd = [
            str(self.bindir / "postgres"),
            "-D", str(self.datadir),
            "-p", str(self.port),
            "-h", _HOST,
            "-k", str(self.sockdir),
            "-c", "fsync=off",
            "-c", "full_page_writes=off",
            "-c", "logging_collector=off",
        ]  # fmt: skip
        for key, value in self.settings.items():
            cmd += ["-c", f"{key}={value}"]
        return cmd

    def _pidfile_lines(self) -> list[str]:
        try:
            return (self.datadir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return []

    def _ready(self) -> bool:
        # postmaster.pid: line 1 = pid, line 8 = status ("ready" once accepting).
        lines = self._pidfile_lines()
        if len(lines) < 8 or self.proc is None:
            return False
        if lines[0].strip() != str(self.proc.pid) or not lines[7].startswith("ready"):
            return False
        return _tcp_connectable(self.port)

    def _stop_signal(self) -> int:
        return signal.SIGINT  # "fast" shutdown

    def kill(self) -> None:
        if self.is_running():
            lines = self._pidfile_lines()
            with contextlib.suppress(IndexError, ValueError):
                self._stale_shm = int(lines[6].split()[1])
        super().kill()

    def _after_kill(self) -> None:
        # Every process is gone: drop the stale lock file and the (tiny) SysV
        # segment so the restart does not depend on PID-reuse luck and no IPC
        # objects leak.  The restart still performs real crash recovery.
        with contextlib.suppress(OSError):
            (self.datadir / "postmaster.pid").unlink()
        shmid, self._stale_shm = self._stale_shm, None
        ipcrm = shutil.which("ipcrm")
        if shmid is not None and ipcrm:
            subprocess.run(
                [ipcrm, "-m", str(shmid)],
                capture_output=True,
                timeout=10,
                check=False,
            )

    # -- connection info -------------------------------------------------
    def _need_port(self) -> int:
        if self.port is None:
            raise ServerError("PostgresServer has not been started yet")
        return self.port

    @property
    def dsn(self) -> str:
        return self.dsn_for("postgres")

    def dsn_for(self, dbname: str) -> str:
        return f"postgresql://postgres@{_HOST}:{self._need_port()}/{dbname}"

    # -- SQL helpers (psql, so no event loop is involved) ----------------
    def psql(self, sql: str, dbname: str = "postgres", timeout: float = DEFAULT_TIMEOUT) -> str:
        """Run ``sql`` with psql; return unaligned, tuples-only output."""
        res = subprocess.run(
            [
                str(self.bindir / "psql"),
                "-X", "-q", "-A", "-t",
                "-v", "ON_ERROR_STOP=1",
                "-h", _HOST,
                "-p", str(self._need_port()),
                "-U", "postgres",
                "-d", dbname,
                "-c", sql,
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=_clean_env(PGCONNECT_TIMEOUT="10"),
        )  # fmt: skip
        if res.returncode != 0:
            raise ServerError(
                f"psql failed (rc={res.returncode}) for {sql!r}: {res.stderr.strip()}"
            )
        return res.stdout

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database (default name ``t_<uuid>``) and return its DSN."""
        name = name or f"t_{uuid.uuid4().hex}"
        self.psql(f"CREATE DATABASE {_quote_ident(name)}")
        return self.dsn_for(name)

    def drop_database(self, name: str, force: bool = True) -> None:
        """Drop a database, terminating its connections first when ``force``."""
        ident = _quote_ident(name)
        if force and self.version >= 13:
            self.psql(f"DROP DATABASE IF EXISTS {ident} WITH (FORCE)")
            return
        if force:
            self.psql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            )
        self.psql(f"DROP DATABASE IF EXISTS {ident}")


# --------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------


class RedisReplyError(ServerError):
    pass


def _resp_command(port: int, *args: str | bytes, timeout: float = 5.0):
    """Send one command with a minimal RESP client; supports non-array replies."""
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        b = arg.encode() if isinstance(arg, str) else arg
        parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
    with socket.create_connection((_HOST, port), timeout=timeout) as s:
        s.sendall(b"".join(parts))
        with s.makefile("rb") as f:
            line = f.readline()
            if not line.endswith(b"\r\n"):
                raise ServerError(f"truncated reply from redis on port {port}: {line!r}")
            kind, body = line[:1], line[1:-2]
            if kind == b"+":
                return body.decode()
            if kind == b"-":
                raise RedisReplyError(body.decode())
            if kind == b":":
                return int(body)
            if kind == b"$":
                n = int(body)
                return None if n < 0 else f.read(n + 2)[:-2]
            raise ServerError(f"unsupported reply type from redis: {line!r}")


class RedisServer(_Server):
    """A private redis-server with AOF persistence in its own directory.

    ``appendfsync`` defaults to ``always`` so that anything acknowledged
    survives even ``kill()`` (SIGKILL) deterministically.
    """

    kind = "redis"

    def __init__(
        self,
        executable: str | os.PathLike | None = None,
        *,
        port: int | None = None,
        base_dir: str | os.PathLike | None = None,
        appendfsync: str = "always",
        extra_args: Sequence[str] = (),
        startup_timeout: float = DEFAULT_TIMEOUT,
    ):
        found = Path(executable) if executable is not None else find_redis_server()
        if found is None or not os.access(found, os.X_OK):
            raise ServerError(f"redis-server not found (executable={found})")
        self.executable = found
        self.appendfsync = appendfsync
        self.extra_args = list(extra_args)
        super().__init__(port=port, base_dir=base_dir, startup_timeout=startup_timeout)
        self.datadir = self.root / "data"
        self.datadir.mkdir()

    def _popen_kwargs(self) -> dict:
        return {"env": _clean_env()}

    def _command(self) -> list[str]:
        return [
            str(self.executable),
            "--port", str(self.port),
            "--bind", _HOST,
            "--dir", str(self.datadir),
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--daemonize", "no",
            "--logfile", "",
            *self.extra_args,
        ]  # fmt: skip

    def _ready(self) -> bool:
        try:
            return _resp_command(self.port, "PING", timeout=1.0) == "PONG"
        except (OSError, ServerError):  # refused, or -LOADING while replaying the AOF
            return False

    def _stop_signal(self) -> int:
        return signal.SIGTERM  # redis treats SIGTERM as SHUTDOWN (fsyncs the AOF)

    @property
    def url(self) -> str:
        if self.port is None:
            raise ServerError("RedisServer has not been started yet")
        return f"redis://{_HOST}:{self.port}/0"

    def command(self, *args: str | bytes, timeout: float = 5.0):
        """Run a single command (simple replies only) without any client library."""
        if self.port is None:
            raise ServerError("RedisServer has not been started yet")
        return _resp_command(self.port, *args, timeout=timeout)

    def flush(self) -> None:
        """FLUSHALL (synchronously, every database)."""
        try:
            self.command("FLUSHALL", "SYNC")
        except RedisReplyError:  # Redis < 6.2 has no SYNC flag; FLUSHALL is synchronous there
            self.command("FLUSHALL")
