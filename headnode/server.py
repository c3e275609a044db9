"""Serving the head node: HTTPS on port 9090 through gunicorn, with a self-signed
certificate created on first start (replace ``DATA_DIR/tls/cert.pem`` and
``key.pem`` with a CA-issued pair and restart to use it instead), beside the
background loops. The first start creates the initial admin and says how to sign in.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import threading
import time
from pathlib import Path

from gunicorn.app.base import BaseApplication

from headnode.app import create_app
from headnode.node import HeadNode

log = logging.getLogger("cloudmover.headnode")
WORKER_CHECK_SECONDS = 0.05


def ensure_certificate(data_dir: str, host: str) -> tuple[str, str]:
    tls = Path(data_dir) / "tls"
    cert, key = tls / "cert.pem", tls / "key.pem"
    if cert.exists() and key.exists():
        return str(cert), str(key)
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    tls.mkdir(parents=True, exist_ok=True)
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CloudMover head node")])
    alt = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    if host not in ("localhost", "127.0.0.1", "0.0.0.0"):
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt.append(x509.DNSName(host))
    now = dt.datetime.now(dt.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(private.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=825))
                   .add_extension(x509.SubjectAlternativeName(alt), critical=False)
                   .sign(private, hashes.SHA256()))
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return str(cert), str(key)


def serve(config: dict) -> int:
    """Serve the UI and API through gunicorn (HTTPS unless TLS is off) until SIGTERM/SIGINT.

    One gunicorn worker process owns the head node (its loops and local workers): there must be
    exactly one aggregator per database. Its threads serve requests; gunicorn restarts it if it dies.
    """
    from headnode import models
    from headnode.accounts import AccountService
    from headnode.config import ensure_data_dir, ensure_secret, load_config

    config = load_config(config)
    ensure_data_dir(config)
    ensure_secret(config, "SECRET_KEY", "secret.key")
    ensure_secret(config, "API_TOKEN", "api.token")
    database = models.connect(config["DATABASE"])
    initial = AccountService(config).ensure_initial_admin()
    database.close()
    options = {"bind": f"{config['HOST']}:{config['PORT']}", "workers": 1, "worker_class": "gthread",
               "threads": 16, "timeout": 120, "graceful_timeout": 30, "accesslog": "-",
               "control_socket_disable": True,   # one per user home: two servers would fight over it
               "access_log_format": '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'}
    scheme = "http"
    if config["TLS"]:
        cert, key = ensure_certificate(config["DATA_DIR"], config["HOST"])
        options.update(certfile=cert, keyfile=key)
        scheme = "https"
    host = "127.0.0.1" if config["HOST"] in ("0.0.0.0", "::") else config["HOST"]
    print(f"CloudMover is serving {scheme}://{host}:{config['PORT']}/ (UI) and "
          f"{scheme}://{host}:{config['PORT']}/api/v1 (REST API); workers: {config['FLEET']}; "
          f"data in {config['DATA_DIR']}", flush=True)
    if scheme == "https":
        print("The certificate is self-signed: your browser asks you to accept it once "
              f"(or install a CA-issued one as {config['DATA_DIR']}/tls/cert.pem and key.pem).", flush=True)
    if initial:
        print(f"First start: sign in as 'admin' with the initial password {initial}\n"
              f"(also written to {config['DATA_DIR']}/initial-admin-password, readable by its owner only); "
              "you must change it at first sign-in.", flush=True)
    else:
        print("Sign in with your CloudMover user name and password.", flush=True)
    _HeadNodeServer(config, options).run()
    return 0


class _HeadNodeServer(BaseApplication):
    def __init__(self, config: dict, options: dict):
        self.node_config, self.options, self.node = config, options, None
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)
        self.cfg.set("post_worker_init", lambda worker: threading.Thread(
            target=self._watch_worker, args=(worker,), name="shutdown-watch", daemon=True).start())
        self.cfg.set("worker_exit", self._stop_node)

    def load(self):
        """In the worker process: build the head node, start its loops, hand gunicorn the app."""
        self.node = HeadNode(self.node_config)
        app = create_app(node=self.node)
        self.node.start()
        return app

    def _watch_worker(self, worker) -> None:
        """gunicorn's worker notices SIGTERM or its master's death only after a second or more,
        then waits for requests in flight; meanwhile the head node would go on planning, beside
        the one that may replace it. Halt its loops at once; the exit hook stops the rest."""
        while not self.node.stopping.wait(WORKER_CHECK_SECONDS):
            if not worker.alive or os.getppid() != worker.ppid:
                log.warning("the head node is shutting down: its loops stop now")
                self.node.halt()
                return

    def _stop_node(self, server, worker) -> None:
        if self.node is not None:
            started = time.monotonic()
            self.node.stop()
            log.warning("head node stopped in %.1f s", time.monotonic() - started)
