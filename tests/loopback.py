"""A real HTTP server on 127.0.0.1 that serves weight files with ``Range`` support and scripted faults.

``behaviour[path]`` picks what a GET of ``path`` does: ``ok``; ``drop_once`` (the first response announces the
whole file, sends half and closes the connection); ``404``; ``500``; ``stall`` (headers and a few bytes, then
silence); ``slow`` (small chunks with pauses, so two clients overlap). Every response records the bytes it sent.
"""

from __future__ import annotations

import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LoopbackServer:
    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.behaviour: dict[str, str] = {}
        self.log: list[dict] = []  # one record per GET: path, range start, status, bytes sent
        self._lock = threading.Lock()
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):  # noqa: N802 (http.server's name)
                server._serve(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def add(self, path: str, data: bytes, behaviour: str = "ok") -> str:
        self.files[path], self.behaviour[path] = data, behaviour
        return self.url + path

    def sent(self, path: str) -> int:
        return sum(r["sent"] for r in self.log if r["path"] == path)

    def requests(self, path: str) -> list[dict]:
        return [r for r in self.log if r["path"] == path]

    def close(self):
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def _serve(self, h: BaseHTTPRequestHandler):
        path = h.path
        mode = self.behaviour.get(path, "404")
        record = {"path": path, "range": None, "status": None, "sent": 0}
        with self._lock:
            self.log.append(record)
            if mode == "drop_once" and len(self.requests(path)) > 1:
                mode = "ok"
        if mode in ("404", "500") or path not in self.files:
            status = 500 if mode == "500" else 404
            record["status"] = status
            body = b"not here" if status == 404 else b"server error"
            h.send_response(status)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
            return
        data = self.files[path]
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", h.headers.get("Range", "") or "")
        if match:
            start = int(match.group(1))
            record["range"] = start
            if start >= len(data):
                record["status"] = 416
                h.send_response(416)
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
        body = data[start:]
        record["status"] = 206 if start else 200
        h.send_response(record["status"])
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Accept-Ranges", "bytes")
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        h.end_headers()
        try:
            if mode == "drop_once":  # half the file, then the connection dies
                half = body[: len(body) // 2]
                h.wfile.write(half)
                record["sent"] += len(half)
                h.wfile.flush()
                h.close_connection = True
                h.connection.shutdown(2)
                return
            if mode == "stall":
                h.wfile.write(body[:100])
                record["sent"] += 100
                h.wfile.flush()
                self._stop.wait(30)
                return
            step = 64 * 1024 if mode == "slow" else len(body)
            for i in range(0, len(body), step):
                h.wfile.write(body[i:i + step])
                record["sent"] += len(body[i:i + step])
                if mode == "slow":
                    h.wfile.flush()
                    time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):
            pass
