"""Serving the head node: HTTPS on port 9090 with a self-signed certificate
created on first start (replace ``DATA_DIR/tls/cert.pem`` and ``key.pem`` with a
CA-issued pair to use it instead), beside the background loops.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import os
import signal
import ssl
import threading
from pathlib import Path

from werkzeug.serving import make_server

from headnode.app import create_app
from headnode.node import HeadNode


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
    node = HeadNode(config)
    app = create_app(node=node)
    context = None
    scheme = "http"
    if node.config["TLS"]:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*ensure_certificate(node.config["DATA_DIR"], node.config["HOST"]))
        scheme = "https"
    server = make_server(node.config["HOST"], node.config["PORT"], app, threaded=True, ssl_context=context)
    node.start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    print(f"CloudMover head node listening on {scheme}://{node.config['HOST']}:{server.port}/api/v1 "
          f"(data in {node.config['DATA_DIR']}; API token in {node.config['DATA_DIR']}/api.token; "
          f"workers: {node.config['FLEET']})", flush=True)
    stop.wait()
    server.shutdown()
    node.stop()
    return 0
