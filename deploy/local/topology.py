"""The production topology as plain processes on one machine, under supervisord.

nginx (TLS with a self-signed certificate made at start) in front of N `gateway run`
processes, M `gateway worker` processes, Redis (the channel layer), Mosquitto with its
dynamic-security plugin (the devices' logins, kept by the `MosquittoDynsec` adapter) and a
PostgreSQL cluster of its own: every one on a free 127.0.0.1 port, everything (configuration,
data, sockets) under one directory, every log in its `logs/`. All Python processes use the
settings module `deploy.settings`, configured by the environment written here.

`python -m deploy.local` runs it in the foreground; `Topology` is what it and the end-to-end
test (tests/e2e/test_topology.py) use.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent  # the directory `deploy` is imported from
APP = "deploy.local.app.asgi:application"
START_TIMEOUT = 120.0  # generous: a loaded 2-core machine; only there to turn a hang into an error
DEVICE_PASSWORD = "local-device-password"  # a local, throw-away topology

REQUIRED = {
    "nginx": "nginx",
    "redis-server": "redis-server",
    "mosquitto": "mosquitto",
    "mosquitto_ctrl": "mosquitto-clients",
    "openssl": "openssl",
}


class MissingTool(RuntimeError):
    """A program the topology needs is not installed."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_tool(name: str) -> str:
    """The path of `name`, in PATH or /usr/sbin; MissingTool naming the Debian package."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        package = REQUIRED.get(name, name)
        raise MissingTool(f"{name} is not installed (Debian: apt-get install {package})")
    return found


def postgres_bin() -> Path:
    """The newest installed PostgreSQL server's bin directory (Debian layout, else PATH)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: [int(n) for n in re.findall(r"\d+", path)],
    )
    if found:
        return Path(found[-1]).parent
    return Path(find_tool("initdb")).parent


def dynsec_plugin() -> str:
    """Mosquitto's dynamic-security plugin (Debian's `mosquitto` package ships it)."""
    found = glob.glob("/usr/lib/*/mosquitto_dynamic_security.so") + glob.glob(
        "/usr/lib/mosquitto_dynamic_security.so"
    )
    if not found:
        raise MissingTool("mosquitto_dynamic_security.so is not installed (Debian: mosquitto)")
    return found[0]


def wait_until(check: object, what: str, timeout: float = START_TIMEOUT) -> None:
    """Poll `check()` until it is true; RuntimeError naming `what` after `timeout` seconds."""
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not up after {timeout:.0f} s")
        time.sleep(0.1)


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


@dataclass
class Gateway:
    """One `gateway run` process: its name (also its MQTT client id) and ports."""

    name: str
    http_port: int = field(default_factory=free_port)
    smtp_port: int = field(default_factory=free_port)

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/-/health/ready"


@dataclass
class Topology:
    """The whole topology under `directory`; `start()`, `ctl(...)`, `stop()`."""

    directory: Path
    gateways: int = 3
    workers: int = 2
    https_port: int = field(default_factory=free_port)
    redis_port: int = field(default_factory=free_port)
    mqtt_port: int = field(default_factory=free_port)
    postgres_port: int = field(default_factory=free_port)
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    processes: list[Gateway] = field(default_factory=list)
    supervisord: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.directory = self.directory.resolve()
        self.processes = [Gateway(f"gateway-{n}") for n in range(1, self.gateways + 1)]

    # Where things are.

    def path(self, *parts: str) -> Path:
        return self.directory.joinpath(*parts)

    @property
    def logs(self) -> Path:
        return self.path("logs")

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def certificate(self) -> Path:
        return self.path("nginx", "cert.pem")

    @property
    def database_url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.postgres_port}/gateway"

    @property
    def twilio_auth_token(self) -> str:
        return f"twilio-{self.secret}"

    @property
    def worker_names(self) -> list[str]:
        return [f"worker-{n}" for n in range(1, self.workers + 1)]

    def environment(self) -> dict[str, str]:
        """What every Python process of the topology reads (deploy/settings.py)."""
        return {
            "DJANGO_SETTINGS_MODULE": "deploy.settings",
            "DJANGO_SECRET_KEY": f"local-{self.secret}",
            "DJANGO_APPS": "deploy.local.app",
            "DJANGO_ROOT_URLCONF": "deploy.local.app.urls",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": self.database_url,
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "MQTT_URL": f"mqtt://gateway:{self.secret}@127.0.0.1:{self.mqtt_port}",
            "MQTT_FAILOVER_EXPIRY": "3",
            "DYNSEC_ADMIN_USER": "gateway-admin",
            "DYNSEC_ADMIN_PASSWORD": f"admin-{self.secret}",
            "SMTP_PORT": "2525",  # each gateway's own port is given on its command line
            "SMTP_HOST": "127.0.0.1",
            "SMTP_HOSTNAME": "mail.topology.example",
            "TWILIO_AUTH_TOKEN": self.twilio_auth_token,
            "FORWARDED_ALLOW_IPS": "127.0.0.1",
            "SHUTDOWN_TIMEOUT": "5",
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
        }

    # Making the files.

    def prepare(self) -> None:
        """Every directory, certificate, configuration file and the database cluster."""
        for tool in REQUIRED:
            find_tool(tool)
        for name in ("logs", "run", "nginx", "mosquitto", "redis"):
            self.path(name).mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o755)  # PostgreSQL's own user must reach its directory
        self.make_certificate()
        self.write_nginx_config()
        self.write_mosquitto_config()
        self.init_postgres()
        self.path("supervisord.conf").write_text(self.supervisord_config())

    def make_certificate(self) -> None:
        subprocess.run(
            [find_tool("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes",
             "-days", "7", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
             "-keyout", str(self.path("nginx", "key.pem")), "-out", str(self.certificate)],
            check=True, capture_output=True,
        )  # fmt: skip

    def write_nginx_config(self) -> None:
        temp = self.path("nginx", "temp")
        temp.mkdir(exist_ok=True)
        temp.chmod(0o1777)  # nginx's workers run as another user when started as root
        servers = "\n".join(
            f"        server 127.0.0.1:{g.http_port} max_fails=1 fail_timeout=2s;"
            for g in self.processes
        )
        text = Template((HERE / "nginx.conf.in").read_text()).substitute(
            run=self.path("run"),
            logs=self.logs,
            nginx=temp,
            upstream_servers=servers,
            https_port=self.https_port,
            certificate=self.certificate,
            key=self.path("nginx", "key.pem"),
        )
        self.path("nginx", "nginx.conf").write_text(text)

    def write_mosquitto_config(self) -> None:
        dynsec = self.path("mosquitto", "dynamic-security.json")
        if not dynsec.exists():
            subprocess.run(
                [find_tool("mosquitto_ctrl"), "dynsec", "init", str(dynsec), "gateway-admin",
                 f"admin-{self.secret}"],
                check=True, capture_output=True,
            )  # fmt: skip
        user = pwd.getpwuid(os.geteuid()).pw_name
        self.path("mosquitto", "mosquitto.conf").write_text(
            "\n".join(
                [
                    f"listener {self.mqtt_port} 127.0.0.1",
                    "allow_anonymous false",
                    f"plugin {dynsec_plugin()}",
                    f"plugin_opt_config_file {dynsec}",
                    # As root, mosquitto would switch to a user who cannot write here.
                    f"user {user}",
                    "persistence true",
                    f"persistence_location {self.path('mosquitto')}/",
                    "autosave_interval 1",
                    # A gateway that is gone has its turn queued until it is adopted.
                    "max_queued_messages 100000",
                    "log_dest stdout",
                    "log_type error",
                    "log_type warning",
                    "log_type notice",
                    "",
                ]
            )
        )

    def postgres_user(self) -> pwd.struct_passwd | None:
        """Who runs PostgreSQL: the current user, or `postgres`/`nobody` under root."""
        if os.geteuid() != 0:
            return None
        users = {user.pw_name: user for user in pwd.getpwall()}
        user = users.get("postgres") or users.get("nobody")
        if user is None:
            raise MissingTool("running as root, and there is neither a postgres nor nobody user")
        return user

    def as_postgres_user(self) -> list[str]:
        user = self.postgres_user()
        if user is None:
            return []
        return [find_tool("setpriv"), f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
                "--clear-groups"]  # fmt: skip

    def init_postgres(self) -> None:
        directory = self.path("postgres")
        if (directory / "data").exists():
            return
        directory.mkdir(exist_ok=True)
        user = self.postgres_user()
        if user is not None:
            os.chown(directory, user.pw_uid, user.pw_gid)
        subprocess.run(
            [*self.as_postgres_user(), str(postgres_bin() / "initdb"),
             "--pgdata", str(directory / "data"), "--auth=trust", "--username=postgres",
             "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"],
            check=True, capture_output=True, timeout=START_TIMEOUT,
        )  # fmt: skip

    def programs(self) -> dict[str, dict[str, str]]:
        """Every supervisord program: its command line and options."""
        python = sys.executable
        postgres = " ".join(
            [*self.as_postgres_user(), str(postgres_bin() / "postgres"),
             "-D", str(self.path("postgres", "data")), "-p", str(self.postgres_port),
             "-c", "listen_addresses=127.0.0.1",
             "-c", f"unix_socket_directories={self.path('postgres')}",
             "-c", "max_connections=200", "-c", "fsync=off"]
        )  # fmt: skip
        programs = {
            "postgres": {"command": postgres, "stopsignal": "INT", "priority": "10"},
            "redis": {
                "command": f"{find_tool('redis-server')} --port {self.redis_port} "
                f"--bind 127.0.0.1 --dir {self.path('redis')} --save '' --appendonly no",
                "priority": "10",
            },
            "mosquitto": {
                "command": f"{find_tool('mosquitto')} "
                f"-c {self.path('mosquitto', 'mosquitto.conf')}",
                "priority": "10",
            },
            "nginx": {
                "command": f"{find_tool('nginx')} -p {self.path('nginx')} "
                f"-c {self.path('nginx', 'nginx.conf')} -e {self.logs}/nginx-error.log",
                "autostart": "false",
                "stopsignal": "QUIT",  # graceful: open connections finish
            },
        }
        for gateway in self.processes:
            programs[gateway.name] = {
                "command": f"{python} -m gateway run {APP} --host 127.0.0.1 "
                f"--port {gateway.http_port} --set mail.PORT={gateway.smtp_port} "
                f"--set mqtt.CLIENT_ID={gateway.name}",
                "environment": f'GATEWAY_PROCESS_NAME="{gateway.name}"',
                "autostart": "false",
                "stopwaitsecs": "30",  # above twice SHUTDOWN_TIMEOUT: the drain, then lifespan
            }
        for name in self.worker_names:
            programs[name] = {
                "command": f"{python} -m gateway worker jobs.mail --app {APP}",
                "environment": f'GATEWAY_PROCESS_NAME="{name}"',
                "autostart": "false",
                "stopwaitsecs": "30",
            }
        return programs

    def supervisord_config(self) -> str:
        environment = ",".join(f'{key}="{value}"' for key, value in self.environment().items())
        lines = [
            "[unix_http_server]",
            f"file={self.path('run', 'supervisor.sock')}",
            "[supervisord]",
            f"logfile={self.logs}/supervisord.log",
            f"pidfile={self.path('run', 'supervisord.pid')}",
            f"childlogdir={self.logs}",
            f"environment={environment}",
            "nodaemon=true",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "[supervisorctl]",
            f"serverurl=unix://{self.path('run', 'supervisor.sock')}",
        ]
        defaults = {
            "directory": str(ROOT),
            "autorestart": "true",
            "startsecs": "1",
            "startretries": "100",
            "stopasgroup": "true",
            "killasgroup": "true",
            "redirect_stderr": "true",
            "stdout_logfile_maxbytes": "0",
        }
        for name, options in self.programs().items():
            lines.append(f"[program:{name}]")
            lines.append(f"stdout_logfile={self.logs}/{name}.log")
            lines += [f"{key}={value}" for key, value in {**defaults, **options}.items()]
        return "\n".join(lines) + "\n"

    # Running it.

    def start(self) -> None:
        """Prepare, start supervisord and the servers, set them up, then the gateways."""
        self.prepare()
        out = self.path("logs", "supervisord.out").open("ab")
        self.supervisord = subprocess.Popen(
            [sys.executable, "-m", "supervisor.supervisord",
             "-c", str(self.path("supervisord.conf"))],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=ROOT,
        )  # fmt: skip
        try:
            wait_until(lambda: self.path("run", "supervisor.sock").exists(), "supervisord")
            for name, port in [("postgres", self.postgres_port), ("redis", self.redis_port),
                               ("mosquitto", self.mqtt_port)]:  # fmt: skip
                wait_until(lambda port=port: listening(port), name)  # type: ignore[misc]
            self.set_up()
            self.ctl("start", *[g.name for g in self.processes], *self.worker_names)
            for gateway in self.processes:
                wait_until(lambda g=gateway: http_ok(g.health_url), gateway.name)  # type: ignore[misc]
            self.ctl("start", "nginx")
            wait_until(lambda: listening(self.https_port), "nginx")
        except BaseException:
            self.stop()
            raise

    def set_up(self) -> None:
        """The database, the broker's login for the gateways, and one device."""
        wait_until(self.postgres_accepts, "postgres")
        subprocess.run(
            [str(postgres_bin() / "createdb"), "-h", "127.0.0.1", "-p", str(self.postgres_port),
             "-U", "postgres", "gateway"],
            check=False, capture_output=True,
        )  # fmt: skip
        self.django("migrate", "--noinput")
        self.broker_login()
        self.django("adddevices", "sensor-1", "--password", DEVICE_PASSWORD)

    def postgres_accepts(self) -> bool:
        done = subprocess.run(
            [str(postgres_bin() / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.postgres_port)],
            capture_output=True, check=False,
        )  # fmt: skip
        return done.returncode == 0

    def django(self, *args: str) -> str:
        """Run a Django management command with the topology's settings."""
        done = subprocess.run(
            [sys.executable, "-m", "django", *args],
            env={**os.environ, **self.environment()}, cwd=ROOT,
            capture_output=True, text=True, timeout=START_TIMEOUT, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"django-admin {args[0]} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def broker_login(self) -> None:
        """The gateways' own MQTT client `gateway`: may subscribe to and publish devices/#."""
        base = [find_tool("mosquitto_ctrl"), "-h", "127.0.0.1", "-p", str(self.mqtt_port),
                "-u", "gateway-admin", "-P", f"admin-{self.secret}", "dynsec"]  # fmt: skip
        for command in (
            ["createClient", "gateway", "-p", self.secret],
            ["createRole", "gateway"],
            ["addRoleACL", "gateway", "subscribePattern", "devices/#", "allow"],
            # Mosquitto 2.0 checks a shared subscription with its $share/<group>/ prefix.
            ["addRoleACL", "gateway", "subscribePattern", "$share/gateway/devices/#", "allow"],
            ["addRoleACL", "gateway", "publishClientSend", "devices/#", "allow"],
            ["addClientRole", "gateway", "gateway"],
        ):
            subprocess.run([*base, *command], check=True, capture_output=True, timeout=30)

    def ctl(self, *args: str) -> str:
        """Run `supervisorctl` against this topology's supervisord."""
        done = subprocess.run(
            [sys.executable, "-m", "supervisor.supervisorctl",
             "-c", str(self.path("supervisord.conf")), *args],
            capture_output=True, text=True, timeout=START_TIMEOUT, check=False,
        )  # fmt: skip
        return done.stdout

    def pid(self, program: str) -> int:
        """The pid supervisord reports for `program` (0 when it is not running)."""
        return int(self.ctl("pid", program).strip() or 0)

    def stop(self) -> None:
        """Stop every process (gateways first: SIGTERM, drained), then supervisord."""
        if self.supervisord is None:
            return
        if self.supervisord.poll() is None:
            self.ctl("stop", "nginx", *[g.name for g in self.processes], *self.worker_names)
            self.ctl("shutdown")
            try:
                self.supervisord.wait(60)
            except subprocess.TimeoutExpired:
                self.supervisord.kill()
                self.supervisord.wait(30)
        self.supervisord = None
