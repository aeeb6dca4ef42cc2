"""The shape users deploy, started from scratch for each test.

* the Procfile's web (gunicorn), worker, wide and beat, each a separate process, run from
  ``.venv-runtime`` (built from ``requirements.lock`` only), with ``config.settings``
  (DEBUG off, a generated secret key);
* a private PostgreSQL cluster (``initdb`` into a temp dir, its own port and socket dir);
* a private broker on its own port: Redis or RabbitMQ (own node name, ports, data dirs).

The test process talks to the stack over HTTP only and reads the database with psycopg.
"""

import contextlib
import fcntl
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import amqp
import psycopg
import redis

from tests.live import (
    ROOT,
    Http,
    Processes,
    free_port,
    obtain_token,
    redis_answers,
    redis_server_args,
    wait_until,
    web_ready,
)

RUNTIME = ROOT / ".venv-runtime"
RUNTIME_BIN = RUNTIME / "bin"
API_CLIENT = ("Production Co", "prod-client", "prod-pass-word-123")

# Short timers so the suite runs in minutes; everything else is the production default.
TIMERS = {
    "JOBTRAIL_WEBHOOK_RETRY_SCHEDULE": "1,1,1,1,1,1,1,1,1,1",
    "JOBTRAIL_WEBHOOK_TIMEOUT": "5",
    # read when migrate registers the periodic tasks
    "JOBTRAIL_WEBHOOK_DISPATCH_INTERVAL": "1",
    "JOBTRAIL_EXPIRY_INTERVAL": "1",
    # the backlog test spreads its deliveries over 20 endpoints of one company
    "JOBTRAIL_MAX_WEBHOOK_ENDPOINTS": "50",
    # the wide lane's test stops the `wide` worker and waits for the `worker` to take over
    "JOBTRAIL_WIDE_LANE_TAKEOVER": "10",
}


def ensure_runtime_venv() -> None:
    """Build ``.venv-runtime`` from requirements.lock only (with the Makefile's target if any),
    once: pytest-xdist's workers each ask, the first builds, the others wait for it."""
    with open(ROOT / ".venv-runtime.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _build_runtime_venv()


def _build_runtime_venv() -> None:
    if "\n.venv-runtime/.installed:" in (ROOT / "Makefile").read_text():
        make = ["make", "--no-print-directory", ".venv-runtime/.installed"]
        subprocess.run(make, check=True, cwd=ROOT)
    elif not (RUNTIME_BIN / "celery").exists():
        subprocess.run(["python3", "-m", "venv", str(RUNTIME)], check=True, cwd=ROOT)
        pip = [str(RUNTIME_BIN / "pip"), "install", "-q", "--require-hashes"]
        subprocess.run([*pip, "-r", "requirements.lock"], check=True, cwd=ROOT)


def base_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "JOBTRAIL_", "CELERY_", "DATABASE_", "PYTHON", "VIRTUAL_"))
    }
    env.update(
        PATH=f"{RUNTIME_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        DJANGO_SETTINGS_MODULE="config.settings",
        DJANGO_DEBUG="0",
        JOBTRAIL_READ_DOTENV="0",
        DJANGO_SECURE_SSL_REDIRECT="0",  # the tests talk plain HTTP to gunicorn
        JOBTRAIL_WEBHOOK_ALLOW_PRIVATE_TARGETS="1",  # the receivers are on loopback
        JOBTRAIL_API_RATE_LIMIT="100000/minute",
        JOBTRAIL_DEBUG_LOGGERS="ops.scheduler",  # beat's sweep runs, counted by tests
        PYTHONUNBUFFERED="1",
        **TIMERS,
    )
    return env


# --- PostgreSQL -------------------------------------------------------------------------------


class PostgresCluster:
    """A private cluster: ``initdb`` into a temp dir, served on a free port of 127.0.0.1."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="jobtrail-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        # initdb and postgres refuse to run as root
        self.user = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        if self.user:
            os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)

    def _pg(self, *args: str) -> None:
        tool = shutil.which(args[0]) or next(Path("/usr/lib/postgresql").glob(f"*/bin/{args[0]}"))
        subprocess.run(
            [str(tool), *args[1:]],
            check=True,
            capture_output=True,
            user=self.user.pw_uid if self.user else None,
            cwd=self.dir,
        )

    def init(self) -> None:
        self._pg("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.dir}'\n"
            )

    def _ctl(self, *args: str) -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "postgres.log"), "-w", *args)

    def start(self) -> None:
        self._ctl("-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-m", mode, "stop")

    def restart(self) -> None:
        self._ctl("-m", "fast", "-t", "60", "restart")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str, database: str = "postgres") -> None:
        with psycopg.connect(self.url(database), autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def log(self) -> str:
        path = self.dir / "postgres.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def destroy(self) -> None:
        if self.running():
            with contextlib.suppress(subprocess.CalledProcessError):
                self.stop(mode="immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


# --- brokers ----------------------------------------------------------------------------------


class RedisBroker:
    name = "redis"

    def __init__(self, processes: Processes) -> None:
        self.processes = processes
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = redis_server_args(self.port, self.processes.workdir)
        self.processes.spawn(self.name, args, env=base_env())
        wait_until(self.answers, 20, "redis")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self.processes.stop(self.name, sig)
        wait_until(lambda: not self.answers(), 20, "redis to stop")

    def answers(self) -> bool:
        return redis_answers(self.port)

    def queued_tasks(self, queue: str = "celery") -> Counter[str]:
        """The task name of every message in ``queue`` and of every unacknowledged one."""
        client = redis.Redis(host="127.0.0.1", port=self.port)
        try:
            messages = [json.loads(raw) for raw in client.lrange(queue, 0, -1)]
            messages += [json.loads(raw)[0] for raw in client.hvals("unacked")]
        finally:
            client.close()
        return Counter(m["headers"]["task"] for m in messages)


class RabbitBroker:
    """A private RabbitMQ node: its own name, ports and data dirs; no plugins.

    It shares the system's epmd; the system RabbitMQ (5672) is not touched.
    """

    name = "rabbitmq"

    def __init__(self, processes: Processes) -> None:
        self.processes = processes
        self.port = free_port()
        self.dir = processes.workdir / "rabbitmq"
        self.dir.mkdir(exist_ok=True)
        (self.dir / "enabled_plugins").write_text("[].\n")
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}//"
        self.env = {
            **base_env(),
            "HOME": str(self.dir),  # its Erlang cookie
            "RABBITMQ_NODENAME": f"jobtrail-test-{self.port}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_LOGS": "-",
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(self.dir / "plugins-expand"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.dir / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),
            "RABBITMQ_PID_FILE": str(self.dir / "rabbitmq.pid"),
        }

    def start(self) -> None:
        server = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
        if not server.exists():
            server = Path(shutil.which("rabbitmq-server") or "rabbitmq-server")
        self.processes.spawn(self.name, [str(server)], env=self.env, cwd=self.dir)
        wait_until(self.answers, 60, "rabbitmq")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self.processes.stop(self.name, sig, timeout=30)
        wait_until(lambda: not self.answers(), 20, "rabbitmq to stop")

    @property
    def node(self) -> str:
        return self.env["RABBITMQ_NODENAME"]

    def ctl(self, *args: str) -> str:
        """``rabbitmqctl -n <this node>`` (the node's own cookie is in its HOME)."""
        tool = Path("/usr/lib/rabbitmq/bin/rabbitmqctl")
        if not tool.exists():
            tool = Path(shutil.which("rabbitmqctl") or "rabbitmqctl")
        result = subprocess.run(
            [str(tool), "-n", self.node, "-q", *args],
            env=self.env,
            cwd=self.dir,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, f"rabbitmqctl {' '.join(args)}:\n{result.stderr}"
        return result.stdout

    def queue_length(self, queue: str = "celery") -> int:
        """Messages in ``queue`` (ready and unacknowledged), as ``rabbitmqctl`` counts them."""
        for line in self.ctl("list_queues", "--no-table-headers", "name", "messages").splitlines():
            name, _, messages = line.strip().rpartition("\t")
            if name == queue:
                return int(messages)
        return 0

    def queued_tasks(self, queue: str = "celery") -> Counter[str]:
        """The task name of every ready message in ``queue``, read and put back.

        Each is fetched without acknowledgement (basic.get); closing the channel returns them
        all to the queue, in their order.
        """
        conn = amqp.Connection(f"127.0.0.1:{self.port}", userid="guest", password="guest")
        conn.connect()
        tasks: Counter[str] = Counter()
        try:
            channel = conn.channel()
            while (message := channel.basic_get(queue, no_ack=False)) is not None:
                tasks[(message.headers or {})["task"]] += 1
            channel.close()
        finally:
            conn.close()
        return tasks

    def answers(self) -> bool:
        """Whether the node answers an AMQP 0-9-1 protocol header with connection.start."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"AMQP\x00\x00\x09\x01")
                return s.recv(1) == b"\x01"
        except OSError:
            return False


BROKERS: dict[str, type[RedisBroker] | type[RabbitBroker]] = {
    "redis": RedisBroker,
    "rabbitmq": RabbitBroker,
}


# --- the application --------------------------------------------------------------------------


def procfile() -> dict[str, str]:
    """The Procfile's commands by process name (what `make run` and a deployment start)."""
    commands = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, command = line.split(":", 1)
            commands[name.strip()] = command.strip()
    return commands


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [str(RUNTIME_BIN / "python"), "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, f"manage.py {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result.stdout


def migrate_template(pg: PostgresCluster, database: str) -> None:
    """Create ``database``, migrate it and add the API client: the template of every test."""
    pg.execute(f'CREATE DATABASE "{database}"')
    env = {
        **base_env(),
        "DATABASE_URL": pg.url(database),
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    }
    manage(env, "migrate", "--noinput", "--verbosity", "0")
    company, username, password = API_CLIENT
    manage(env, "create_api_client", company, username, "--password", password)


METRICS_TOKEN = "production-metrics-token"


@dataclass
class ProductionStack:
    workdir: Path
    pg: PostgresCluster
    database: str
    broker_name: str
    web_port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self.processes = Processes(self.workdir)
        self.broker: RedisBroker | RabbitBroker = BROKERS[self.broker_name](self.processes)
        self.secret_key = secrets.token_urlsafe(50)
        (self.workdir / "media").mkdir(exist_ok=True)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def env(self) -> dict[str, str]:
        return {
            **base_env(),
            "DJANGO_SECRET_KEY": self.secret_key,
            "DATABASE_URL": self.pg.url(self.database),
            "CELERY_BROKER_URL": self.broker.url,
            "JOBTRAIL_MEDIA_ROOT": str(self.workdir / "media"),
            "JOBTRAIL_PORT": str(self.web_port),
            # this stack's processes share their metrics here (not the test process's folder)
            "PROMETHEUS_MULTIPROC_DIR": str(self.workdir / "prometheus"),
            "JOBTRAIL_METRICS_TOKEN": METRICS_TOKEN,
        }

    def start_process(self, name: str) -> int:
        # The Procfile's lines start with exec: the process's pid is the server's, as under a
        # process manager.
        command = procfile()[name]
        assert command.startswith("exec "), f"Procfile {name}: start the line with exec"
        return self.processes.spawn(name, ["/bin/sh", "-c", command], env=self.env())

    def start_web(self) -> None:
        self.start_process("web")
        wait_until(lambda: web_ready(self.api), 60, "gunicorn to answer /healthz")

    def start_worker(self) -> None:
        before = self.log("worker").count(" ready.")
        self.start_process("worker")
        wait_until(lambda: self.log("worker").count(" ready.") > before, 60, "the Celery worker")

    def start_wide(self) -> None:
        """The wide lane's worker (``webhooks.lanes``)."""
        before = self.log("wide").count(" ready.")
        self.start_process("wide")
        wait_until(lambda: self.log("wide").count(" ready.") > before, 60, "the wide worker")

    def start_beat(self) -> None:
        before = self.log("beat").count("beat: Starting")
        self.start_process("beat")
        wait_until(lambda: self.log("beat").count("beat: Starting") > before, 60, "Celery beat")

    def start(self) -> "ProductionStack":
        self.broker.start()
        self.start_web()
        self.start_worker()
        self.start_wide()
        self.start_beat()
        return self

    def stop(self) -> None:
        self.processes.stop_all(last=[self.broker.name])

    def log(self, name: str) -> str:
        return self.processes.log(name)

    def dump_logs(self) -> str:
        pg = f"----- postgres.log (tail) -----\n{self.pg.log()[-3000:]}"
        return f"{self.processes.dump_logs()}\n{pg}"

    def alive(self, name: str, pid: int) -> bool:
        """Whether process ``name`` is still the one started with ``pid``, and running."""
        return self.processes.running(name) and self.processes.pid(name) == pid

    # --- talking to it --------------------------------------------------------------------

    def http(self) -> Http:
        _, username, password = API_CLIENT
        return Http(self.api, obtain_token(self.api, username, password), timeout=60)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Read the stack's database (a new connection each time: it may have restarted)."""
        with psycopg.connect(self.pg.url(self.database), autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Write to the stack's database in one transaction; the number of rows affected."""
        with psycopg.connect(self.pg.url(self.database)) as conn:
            return conn.execute(sql, params).rowcount  # type: ignore[arg-type]

    def run_python(self, code: str, *args: str, timeout: float = 600) -> str:
        """Run ``code`` with the runtime venv's Python and the stack's environment (Django set
        up), as a one-off process of the deployment would; its output."""
        result = subprocess.run(
            [str(RUNTIME_BIN / "python"), "-c", code, *args],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert result.returncode == 0, f"{code}\n{result.stdout}{result.stderr}"
        return result.stdout
