"""A throw-away Dovecot IMAP server for tests, started from the installed binary.

Each instance lives in its own temporary directory (base_dir, state, Maildir, passwd file, log)
and listens on a free 127.0.0.1 port; it can be stopped and started again on the same port.
The system Dovecot, if any, is never touched.
"""

from __future__ import annotations

import contextlib
import getpass
import grp
import imaplib
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.support import free_port, not_installed

__all__ = ["DOVECOT", "Dovecot", "dovecot_or_skip", "free_port", "running_dovecot"]

DOVECOT = "/usr/sbin/dovecot"
USER = "inbox@example.com"
PASSWORD = "s3cret-pass"
START_TIMEOUT = 30.0  # generous: only there to turn a broken start into a failure


_LISTENERS = """
  inet_listener imap {{
    port = {imap}
    address = 127.0.0.1
  }}
  inet_listener imaps {{
    port = {imaps}
    address = 127.0.0.1
    ssl = {ssl}
  }}
"""

# first_valid_uid: Dovecot refuses mail users below it (login succeeds, then the session dies).
# Dovecot never serves mail as root, hence mail_uid. The short intervals make IDLE notice new
# mail within a second and send "still here" often (the adapter must ignore those).
_CONFIG = """
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
instance_name = gateway-test-{port}
protocols = imap
listen = 127.0.0.1
{tls}disable_plaintext_auth = no
auth_mechanisms = plain login
{users}first_valid_uid = {uid}
last_valid_uid = 0
first_valid_gid = {gid}
mail_privileged_group = {group}
mail_uid = {uid}
mail_gid = {gid}
mail_home = {root}/mail/%u
mail_location = maildir:~/Maildir
mailbox_idle_check_interval = 1 secs
imap_idle_notify_interval = 1 secs
shutdown_clients = yes
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/passwd
}}
service imap-login {{{listeners}}}
"""


def dovecot_or_skip() -> str:
    """The Dovecot binary; skip the test when it is missing (fail in CI)."""
    path = shutil.which("dovecot") or (DOVECOT if os.path.exists(DOVECOT) else None)
    if path is None:
        message = "dovecot is not installed (Debian: apt-get install dovecot-imapd)"
        not_installed(message)
    return path


def _service_users() -> str:
    """Run Dovecot's helpers as the current user, who owns the temporary directory."""
    if os.getuid() == 0:
        # The auth processes must read the passwd file inside the test's private directory.
        return "service auth {\n  user = root\n}\nservice auth-worker {\n  user = root\n}\n"
    me = getpass.getuser()
    return f"default_login_user = {me}\ndefault_internal_user = {me}\n"


def _mail_owner() -> tuple[int, int]:
    """Who owns the Maildir: the current user, or `nobody` as Dovecot never serves mail as root."""
    if os.getuid() != 0:
        return os.getuid(), os.getgid()
    nobody = pwd.getpwnam("nobody")
    return nobody.pw_uid, nobody.pw_gid


def _self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"),
            *("-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@dataclass
class Dovecot:
    """One Dovecot instance: a Maildir user `USER` served over IMAP on `port`."""

    binary: str
    root: Path
    tls: bool = False
    capability: str | None = None
    """When set, the whole IMAP CAPABILITY list announced (to test clients without IDLE...)."""
    port: int = field(default_factory=free_port)
    user: str = USER
    password: str = PASSWORD
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.root / "dovecot.log"

    @property
    def cafile(self) -> Path:
        """The self-signed certificate a TLS client must trust."""
        return self.root / "cert.pem"

    def configure(self) -> None:
        """Write the configuration, the passwd file and the Maildir."""
        for sub in ("run", "state", "mail"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root / "run", 0o755)
        uid, gid = _mail_owner()
        os.chmod(self.root, 0o711)
        os.chown(self.root / "mail", uid, gid)
        passwd = f"{self.user}:{{PLAIN}}{self.password}:::::\n"
        (self.root / "passwd").write_text(passwd)
        (self.root / "dovecot.conf").write_text(self._config(uid, gid))

    def _config(self, uid: int, gid: int) -> str:
        root = self.root
        if self.tls:
            cert, key = _self_signed(root)
            tls = f"ssl = required\nssl_cert = <{cert}\nssl_key = <{key}\n"
            listeners = _LISTENERS.format(imap=0, imaps=self.port, ssl="yes")
        else:
            tls = "ssl = no\n"
            listeners = _LISTENERS.format(imap=self.port, imaps=0, ssl="no")
        config = _CONFIG.format(
            root=root,
            port=self.port,
            tls=tls,
            users=_service_users(),
            uid=uid,
            gid=gid,
            group=grp.getgrgid(gid).gr_name,
            listeners=listeners,
        )
        if self.capability is not None:
            config += f"imap_capability = {self.capability}\n"
        return config

    def start(self) -> None:
        """Start in the foreground (as a child of the test) and wait for the greeting."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        cmd = [self.binary, "-F", "-c", str(self.root / "dovecot.conf")]
        # Its own process group, so stop() can end the sessions the master leaves behind.
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dovecot exited: {self._failure()}")
            if self._greets():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"dovecot did not start: {self._failure()}")

    def _greets(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                if self.tls:
                    context = ssl.create_default_context(cafile=str(self.cafile))
                    with context.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
                        return tls.recv(64).startswith(b"* OK")
                return sock.recv(64).startswith(b"* OK")
        except OSError:
            return False

    def _failure(self) -> str:
        stderr = b""
        if self.proc is not None and self.proc.poll() is not None and self.proc.stderr:
            stderr = self.proc.stderr.read()
        log = self.log_path.read_text() if self.log_path.exists() else ""
        return f"{stderr.decode(errors='replace')}\n{log[-4000:]}"

    def stop(self) -> None:
        """Stop the master and every process it started: open IMAP sessions drop at once."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(START_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(START_TIMEOUT)
        # The master exits without ending imap, log and stats processes: end its group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def restart(self) -> None:
        """Stop, then start again on the same port."""
        self.stop()
        self.start()

    @contextlib.contextmanager
    def client(self, mailbox: str = "INBOX") -> Iterator[imaplib.IMAP4]:
        """A logged-in standard-library IMAP client with `mailbox` selected."""
        if self.tls:
            context = ssl.create_default_context(cafile=str(self.cafile))
            imap: imaplib.IMAP4 = imaplib.IMAP4_SSL("127.0.0.1", self.port, ssl_context=context)
        else:
            imap = imaplib.IMAP4("127.0.0.1", self.port)
        try:
            imap.login(self.user, self.password)
            imap.select(mailbox)
            yield imap
        finally:
            with contextlib.suppress(Exception):
                imap.logout()

    def append(self, raw: bytes, mailbox: str = "INBOX") -> None:
        """APPEND one message, unseen, as a mail client would."""
        with self.client(mailbox) as imap:
            status, detail = imap.append(mailbox, "", None, raw)
            assert status == "OK", detail

    def flags(self, mailbox: str = "INBOX") -> dict[int, set[str]]:
        """Every message's UID and flags in `mailbox`."""
        with self.client(mailbox) as imap:
            status, data = imap.uid("FETCH", "1:*", "(UID FLAGS)")
            assert status == "OK", data
        # Lines without a UID are unsolicited flag updates another session (the adapter)
        # caused while this FETCH ran; the answer to the FETCH itself always has the UID.
        return dict(
            _parse_flags(line) for line in data if isinstance(line, bytes) and b"UID " in line
        )

    def create(self, mailbox: str) -> None:
        with self.client() as imap:
            imap.create(mailbox)

    def delete(self, mailbox: str) -> None:
        with self.client() as imap:
            imap.delete(mailbox)


def _parse_flags(line: bytes) -> tuple[int, set[str]]:
    text = line.decode()
    uid = int(text.split("UID ", 1)[1].split()[0].rstrip(")"))
    flags = text.split("FLAGS (", 1)[1].split(")", 1)[0]
    return uid, set(flags.split())


@contextlib.contextmanager
def running_dovecot(
    root: Path, *, tls: bool = False, capability: str | None = None
) -> Iterator[Dovecot]:
    """A started Dovecot in `root`, always stopped afterwards."""
    binary = dovecot_or_skip()
    # Its own directory under /tmp: the mail user must be able to traverse every parent.
    home = Path(tempfile.mkdtemp(prefix="gateway-dovecot-", dir=root if os.getuid() else None))
    server = Dovecot(binary, home, tls=tls, capability=capability)
    try:
        server.configure()
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)
