"""Throw-away Redis and PostgreSQL servers for the peer benchmarks.

Each server runs from the Debian package's binaries, on 127.0.0.1 and a free
port, with all its files in a fresh temporary directory; it is stopped by
its pid (SIGTERM/SIGINT, then SIGKILL after a timeout) and the directory
removed, also when the caller fails::

    with RedisServer() as redis:            # in-memory: no RDB, no AOF
        ...redis.port...
    with RedisServer(appendonly=True, appendfsync="always") as redis:   # durable
        ...
    with PostgresServer(fsync=True, synchronous_commit="on") as pg:    # durable
        ...pg.dsn...

Durability is a constructor parameter so the same code measures the
in-memory and the durable configurations.  :func:`redis_available` and
:func:`postgres_available` say whether the binaries (and, for PostgreSQL,
the Python driver) are there, and how to install them when they are not.
"""

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

__all__ = ["RedisServer", "PostgresServer", "RespClient", "redis_available", "postgres_available",
           "free_port", "ServerError"]

REDIS_INSTALL = "apt-get install redis-server (Debian/Ubuntu)"
POSTGRES_INSTALL = "apt-get install postgresql (Debian/Ubuntu) and pip install psycopg2-binary " \
                   "(or pip install 'double11-kernel[peers]')"


class ServerError(RuntimeError):
    """A peer server did not start (its log tail is in the message)."""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    """Start in ``__enter__``, stop by pid in ``__exit__`` (always)."""

    name = "server"
    stop_signal = signal.SIGTERM

    def __init__(self, startup_timeout=30.0, stop_timeout=15.0):
        self.startup_timeout, self.stop_timeout = startup_timeout, stop_timeout
        self.proc, self.dir, self.port = None, None, None

    @property
    def pid(self):
        return None if self.proc is None else self.proc.pid

    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix=f"kernel-bench-{self.name}-")
        self.port = free_port()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def _wait_ready(self, ready):
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"{self.name} exited with {self.proc.returncode}: {self.log_tail()}")
            if ready():
                return
            time.sleep(0.05)
        raise ServerError(f"{self.name} not ready after {self.startup_timeout:.0f} s: {self.log_tail()}")

    def log_tail(self, n=800):
        try:
            with open(os.path.join(self.dir, "server.log"), encoding="utf-8", errors="replace") as f:
                return f.read()[-n:]
        except (OSError, TypeError):
            return "(no log)"

    def stop(self):
        """Stop the server by its pid, then remove its directory."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, self.stop_signal)
                self.proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(self.stop_timeout)
            except ProcessLookupError:
                pass
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


# ------------------------------------------------------------------- Redis
def redis_available():
    """``(True, path)`` or ``(False, how to install)``."""
    path = shutil.which("redis-server")
    return (True, path) if path else (False, f"redis-server not found: {REDIS_INSTALL}")


class RedisServer(_Server):
    """``redis-server`` on 127.0.0.1.

    Parameters
    ----------
    appendonly : bool
        Write the append-only file (AOF).  Default ``False``: no persistence
        at all (no RDB snapshots either), the in-memory configuration.
    appendfsync : {"always", "everysec", "no"}
        With ``appendonly``: when the AOF is fsynced.  ``"always"``: before
        each reply, the durable configuration.
    """

    name = "redis"

    def __init__(self, appendonly=False, appendfsync="everysec", **kw):
        super().__init__(**kw)
        if appendfsync not in ("always", "everysec", "no"):
            raise ValueError(f"appendfsync must be always, everysec or no, got {appendfsync!r}")
        self.appendonly, self.appendfsync = appendonly, appendfsync

    @property
    def settings(self):
        if not self.appendonly:
            return "no persistence (save '', appendonly no)"
        return f"appendonly yes, appendfsync {self.appendfsync}"

    def _start(self):
        ok, path = redis_available()
        if not ok:
            raise ServerError(path)
        cmd = [path, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir, "--save", "",
               "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", self.appendfsync,
               "--daemonize", "no", "--protected-mode", "no", "--logfile", os.path.join(self.dir, "server.log")]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self._wait_ready(self._pong)

    def _pong(self):
        try:
            with RespClient(self.port, timeout=1.0) as c:
                return c.call("PING") == "PONG"
        except OSError:
            return False

    def client(self, timeout=60.0):
        return RespClient(self.port, timeout=timeout)


class RespClient:
    """A minimal Redis client (RESP2 over one socket): enough for the peer
    benchmark, with no dependency.  ``call`` sends one command;
    ``pipeline`` sends many pre-encoded commands and reads their replies."""

    def __init__(self, port, host="127.0.0.1", timeout=60.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("rb", buffering=1 << 16)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.reader.close()
        self.sock.close()

    @staticmethod
    def encode(*args):
        parts = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
        return b"".join(parts)

    def read(self):
        line = self.reader.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        kind, body = line[:1], line[1:-2]
        if kind == b"+":
            return body.decode()
        if kind == b"-":
            raise ServerError(f"redis: {body.decode()}")
        if kind == b":":
            return int(body)
        if kind == b"$":
            n = int(body)
            return None if n < 0 else self.reader.read(n + 2)[:-2].decode()
        if kind == b"*":
            n = int(body)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise ServerError(f"redis: unexpected reply {line!r}")

    def call(self, *args):
        self.sock.sendall(self.encode(*args))
        return self.read()

    def pipeline(self, chunks):
        """Send ``chunks`` (``(bytes, n_commands)``) one ahead of reading the
        replies of the previous one; return every reply in order."""
        out, pending = [], None
        for chunk in chunks:
            self.sock.sendall(chunk[0])
            if pending is not None:
                out += [self.read() for _ in range(pending)]
            pending = chunk[1]
        if pending is not None:
            out += [self.read() for _ in range(pending)]
        return out


# -------------------------------------------------------------- PostgreSQL
def _pg_bindir():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if found:
        return os.path.dirname(found[-1])
    path = shutil.which("postgres")
    return os.path.dirname(path) if path else None


def postgres_available():
    """``(True, bindir)`` or ``(False, how to install)``: the server binaries
    and the psycopg2 driver are both needed."""
    bindir = _pg_bindir()
    if bindir is None or not os.path.exists(os.path.join(bindir, "initdb")):
        return False, f"PostgreSQL server binaries not found: {POSTGRES_INSTALL}"
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return False, f"the psycopg2 driver is not installed: {POSTGRES_INSTALL}"
    return True, bindir


class PostgresServer(_Server):
    """A fresh PostgreSQL cluster (``initdb``) served on 127.0.0.1.

    Parameters
    ----------
    fsync : bool
        ``fsync`` setting.  Default ``False`` (with ``synchronous_commit
        off`` and no full-page writes: the in-memory-ish configuration).
    synchronous_commit : str
        ``"on"`` waits for the WAL flush at each commit: with ``fsync=True``
        the durable configuration.
    extra : dict, optional
        More ``-c name=value`` settings.

    Run as root, the server runs as the ``postgres`` system user (PostgreSQL
    refuses root), which owns the temporary directory.
    """

    name = "postgresql"
    stop_signal = signal.SIGINT  # "fast" shutdown

    def __init__(self, fsync=False, synchronous_commit="off", extra=None, **kw):
        super().__init__(**kw)
        self.fsync, self.synchronous_commit, self.extra = fsync, synchronous_commit, dict(extra or {})

    @property
    def settings(self):
        return (f"fsync {'on' if self.fsync else 'off'}, synchronous_commit {self.synchronous_commit}, "
                f"full_page_writes {'on' if self.fsync else 'off'}")

    @property
    def dsn(self):
        return f"host=127.0.0.1 port={self.port} user=bench dbname=postgres connect_timeout=10"

    def _demote(self):
        if os.geteuid() != 0:
            return None
        user = pwd.getpwnam("postgres")
        os.chown(self.dir, user.pw_uid, user.pw_gid)

        def demote():
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
        return demote

    def _start(self):
        ok, bindir = postgres_available()
        if not ok:
            raise ServerError(bindir)
        demote = self._demote()
        data = os.path.join(self.dir, "data")
        log = open(os.path.join(self.dir, "server.log"), "ab")  # noqa: SIM115 - closed below
        try:
            subprocess.run([os.path.join(bindir, "initdb"), "-D", data, "-U", "bench", "--auth=trust",
                            "-E", "UTF8", "--no-sync"], stdout=log, stderr=log, preexec_fn=demote,
                           check=True, timeout=self.startup_timeout, cwd=self.dir)
        except subprocess.CalledProcessError as exc:
            log.close()
            raise ServerError(f"initdb failed ({exc.returncode}): {self.log_tail()}") from None
        settings = {"listen_addresses": "127.0.0.1", "unix_socket_directories": self.dir,
                    "fsync": "on" if self.fsync else "off", "synchronous_commit": self.synchronous_commit,
                    "full_page_writes": "on" if self.fsync else "off", "shared_buffers": "128MB",
                    **self.extra}
        cmd = [os.path.join(bindir, "postgres"), "-D", data, "-p", str(self.port)]
        for k, v in settings.items():
            cmd += ["-c", f"{k}={v}"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, preexec_fn=demote,
                                     cwd=self.dir)
        log.close()
        self._wait_ready(self._accepts)

    def _accepts(self):
        import psycopg2
        try:
            psycopg2.connect(self.dsn).close()
            return True
        except psycopg2.OperationalError:
            return False

    def connect(self):
        import psycopg2
        return psycopg2.connect(self.dsn)
