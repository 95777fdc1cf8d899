"""A small HTTP server that follows the documented Doris Stream Load protocol.

This is a protocol test double, not a Doris server: an FE that answers every load
with ``307`` to a BE, and a BE that checks Basic auth, keeps a label registry and
answers with Doris' JSON statuses. Scenarios make it answer ``Publish Timeout``,
``Fail`` (with an ``ErrorURL``), a label still ``RUNNING``, or drop the response of
a load it did commit (the case a client retry must survive).
"""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# An error page as Doris writes one: reasons, with the rejected rows and values quoted.
ERROR_PAGE = (
    "Reason: column `study_date` is not a date. src line: [T1 PAT-SECRET-1 Yamada^Tarou "
    "19700101]\n"
    "Reason: column_name[patient_name], the length of input is too long than schema. first "
    "32 bytes of input str: [Yamada^Tarou=山田^太郎] schema length: 64; actual length: 70; . "
    "src line [T1,PAT-SECRET-1,Yamada^Tarou=山田^太郎];\n"
)
PATIENT_VALUES = ("PAT-SECRET-1", "Yamada", "19700101", "山田")


@dataclass
class DorisProtocolState:
    user: str = "wado"
    password: str = "wado"
    labels: dict[str, str] = field(default_factory=dict)  # label -> FINISHED | RUNNING
    rows: dict[str, list[dict]] = field(default_factory=dict)  # table -> loaded rows
    requests: list[dict] = field(default_factory=list)
    scenario: list[str] = field(default_factory=list)  # consumed one per load request
    running_polls: int = 0


def _handler(state: DorisProtocolState, role: str, be_port_ref: list[int]):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep test output quiet
            pass

        def _reply(self, code: int, body: dict | str, headers: dict | None = None):
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(code)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path.startswith("/error_log"):
                self._reply(200, ERROR_PAGE)
            else:
                self._reply(404, {"msg": "not found"})

        def do_PUT(self):
            length = int(self.headers.get("Content-Length", 0))
            body = self.rfile.read(length)
            if role == "fe":
                state.requests.append({"role": "fe", "path": self.path})
                location = f"http://127.0.0.1:{be_port_ref[0]}{self.path}"
                self._reply(307, "", {"Location": location})
                return
            auth = self.headers.get("Authorization", "")
            expected = (
                "Basic " + base64.b64encode(f"{state.user}:{state.password}".encode()).decode()
            )
            state.requests.append(
                {
                    "role": "be",
                    "path": self.path,
                    "label": self.headers.get("label"),
                    "columns": self.headers.get("columns"),
                    "auth_ok": auth == expected,
                }
            )
            if auth != expected:
                self._reply(401, {"Status": "Fail", "Message": "Access denied"})
                return
            label = self.headers.get("label", "")
            table = self.path.split("/")[3]
            scenario = state.scenario.pop(0) if state.scenario else "success"
            if label in state.labels:
                if state.labels[label] == "RUNNING":
                    state.running_polls += 1
                    if state.running_polls >= 2:
                        state.labels[label] = "FINISHED"
                self._reply(
                    200,
                    {
                        "Status": "Label Already Exists",
                        "Label": label,
                        "ExistingJobStatus": state.labels[label],
                    },
                )
                return
            if scenario == "fail":
                self._reply(
                    200,
                    {
                        "Status": "Fail",
                        "Label": label,
                        "Message": "too many filtered rows",
                        "ErrorURL": f"http://127.0.0.1:{be_port_ref[0]}/error_log?file=x",
                    },
                )
                return
            rows = json.loads(body)
            if scenario == "running":
                state.labels[label] = "RUNNING"
            else:
                state.labels[label] = "FINISHED"
            state.rows.setdefault(table, []).extend(rows)
            if scenario == "drop_response":
                self.close_connection = True
                self.connection.shutdown(2)  # committed, but the client hears nothing
                return
            if scenario == "running":
                self._reply(
                    200,
                    {
                        "Status": "Label Already Exists",
                        "Label": label,
                        "ExistingJobStatus": "RUNNING",
                    },
                )
                return
            status = "Publish Timeout" if scenario == "publish_timeout" else "Success"
            self._reply(
                200,
                {
                    "Status": status,
                    "Label": label,
                    "NumberLoadedRows": len(rows),
                    "NumberTotalRows": len(rows),
                },
            )

    return Handler


class DorisProtocolServer:
    """FE and BE on two loopback ports; use as a context manager."""

    def __init__(self) -> None:
        self.state = DorisProtocolState()
        be_port: list[int] = [0]
        self.be = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.state, "be", be_port))
        be_port[0] = self.be.server_address[1]
        self.fe = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.state, "fe", be_port))
        self.fe_url = f"http://127.0.0.1:{self.fe.server_address[1]}"

    def __enter__(self) -> DorisProtocolServer:
        for srv in (self.fe, self.be):
            threading.Thread(target=srv.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        for srv in (self.fe, self.be):
            srv.shutdown()
            srv.server_close()
