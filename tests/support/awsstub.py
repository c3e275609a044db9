"""A local HTTP server standing in front of the moto server for the two AWS calls
moto does not answer: Service Quotas ``GetServiceQuota`` for EC2 (moto knows
only VPC quotas) and IAM ``SimulatePrincipalPolicy`` (moto has no policy
simulator). It answers those with the shapes AWS gives (JSON 1.1 and the IAM
query API's XML), from what the test set, and passes every other request to
moto unchanged, so a client pointed at it sees one AWS endpoint."""
from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

QUOTA_NAMES = {"L-1216C47A": "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances"}


class AwsStub:
    """``quotas``: (service code, quota code) -> value; a missing one answers NoSuchResourceException.
    ``pass_role``: the EvalDecision of iam:PassRole (allowed, implicitDeny, explicitDeny), or
    "AccessDenied" for a head node that may not simulate. ``calls`` counts the answered calls."""

    def __init__(self, upstream: str, *, quotas: dict | None = None, pass_role: str = "allowed"):
        self.upstream, self.quotas, self.pass_role = upstream.rstrip("/"), dict(quotas or {}), pass_role
        self.calls: dict[str, int] = {}
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                stub._handle(self, "POST")

            def do_GET(self):
                stub._handle(self, "GET")

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> "AwsStub":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- requests ------------------------------------------------------------------------
    def _handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        target = request.headers.get("X-Amz-Target", "")
        if target == "ServiceQuotasV20190624.GetServiceQuota":
            self._count("GetServiceQuota")
            return self._quota(request, json.loads(body or b"{}"))
        form = parse_qs(body.decode("utf-8", "replace")) if method == "POST" else {}
        if form.get("Action") == ["SimulatePrincipalPolicy"]:
            self._count("SimulatePrincipalPolicy")
            return self._simulation(request, form)
        self._forward(request, method, body)

    def _count(self, call: str) -> None:
        self.calls[call] = self.calls.get(call, 0) + 1

    def _quota(self, request, asked: dict) -> None:
        service, code = asked.get("ServiceCode"), asked.get("QuotaCode")
        value = self.quotas.get((service, code))
        if value is None:
            return _send(request, 400, "application/x-amz-json-1.1", json.dumps({
                "__type": "NoSuchResourceException", "Message": f"The quota {code} of {service} was not found."}))
        _send(request, 200, "application/x-amz-json-1.1", json.dumps({"Quota": {
            "ServiceCode": service, "ServiceName": "Amazon Elastic Compute Cloud (Amazon EC2)",
            "QuotaArn": f"arn:aws:servicequotas:us-east-1:123456789012:{service}/{code}", "QuotaCode": code,
            "QuotaName": QUOTA_NAMES.get(code, code), "Value": float(value), "Unit": "None", "Adjustable": True,
            "GlobalQuota": False, "UsageMetric": {
                "MetricNamespace": "AWS/Usage", "MetricName": "ResourceCount",
                "MetricDimensions": {"Class": "Standard/OnDemand", "Resource": "vCPU", "Service": "EC2",
                                     "Type": "Resource"},
                "MetricStatisticRecommendation": "Maximum"}}}))

    def _simulation(self, request, form: dict) -> None:
        if self.pass_role == "AccessDenied":
            return _send(request, 403, "text/xml", (
                '<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error><Type>Sender</Type>'
                "<Code>AccessDenied</Code><Message>User is not authorized to perform: iam:SimulatePrincipalPolicy"
                "</Message></Error><RequestId>stub</RequestId></ErrorResponse>"))
        results = "".join(
            f"<member><EvalActionName>{escape(action)}</EvalActionName>"
            f"<EvalResourceName>{escape(resource)}</EvalResourceName>"
            f"<EvalDecision>{self.pass_role}</EvalDecision><MatchedStatements/><MissingContextValues/></member>"
            for action in form.get("ActionNames.member.1", [])
            for resource in form.get("ResourceArns.member.1", []))
        _send(request, 200, "text/xml", (
            '<SimulatePrincipalPolicyResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">'
            f"<SimulatePrincipalPolicyResult><IsTruncated>false</IsTruncated><EvaluationResults>{results}"
            "</EvaluationResults></SimulatePrincipalPolicyResult>"
            "<ResponseMetadata><RequestId>stub</RequestId></ResponseMetadata></SimulatePrincipalPolicyResponse>"))

    def _forward(self, request, method: str, body: bytes) -> None:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        upstream = urllib.request.Request(self.upstream + request.path, data=body if method == "POST" else None,
                                          headers=headers, method=method)
        try:
            with urllib.request.urlopen(upstream, timeout=60) as answer:
                status, kind, data = answer.status, answer.headers.get("Content-Type", ""), answer.read()
        except urllib.error.HTTPError as refused:
            status, kind, data = refused.code, refused.headers.get("Content-Type", ""), refused.read()
        _send(request, status, kind, data)


def _send(request, status: int, kind: str, body) -> None:
    data = body.encode() if isinstance(body, str) else body
    request.send_response(status)
    request.send_header("Content-Type", kind)
    request.send_header("Content-Length", str(len(data)))
    request.send_header("x-amzn-RequestId", "stub")
    request.end_headers()
    request.wfile.write(data)
