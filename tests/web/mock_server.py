#!/usr/bin/env python3
"""Development-only stand-in for the retail server: serves chat.html at /chat and mimics
POST /v1/chat/completions and POST /v1/retail/feedback closely enough to exercise the page.

Usage: python3 tests/web/mock_server.py [PORT] [API_KEY]   (defaults: 8099, test-key)
"""
import json
import os
import sys
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HTML = os.path.join(ROOT, "crates", "kiln-retail", "web", "chat.html")
PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 8099
KEY = sys.argv[2] if len(sys.argv) > 2 else "test-key"
COMPLETIONS = set()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        sys.stderr.write("mock: " + (fmt % args) + "\n")

    def send_json(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def error(self, status, message, typ, code):
        self.send_json(status, {"error": {"message": message, "type": typ, "code": code}})

    def do_GET(self):
        if self.path in ("/chat", "/chat/"):
            with open(HTML, "rb") as f:
                body = f.read()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/health":
            self.send_json(200, {"status": "ok"})
        else:
            self.error(404, "not found", "invalid_request_error", "not_found")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.headers.get("Authorization") != "Bearer " + KEY:
            return self.error(401, "Invalid API key", "invalid_request_error", "invalid_api_key")
        try:
            req = json.loads(raw)
        except ValueError:
            return self.error(400, "body is not JSON", "invalid_request_error", "bad_json")
        if self.path == "/v1/chat/completions":
            msgs = req.get("messages")
            if req.get("model") != "retail-assistant" or not isinstance(msgs, list) or not msgs:
                return self.error(400, "bad request", "invalid_request_error", "bad_request")
            last = msgs[-1]
            content = last.get("content")
            has_image = isinstance(content, list) and any(
                p.get("type") == "image_url"
                and str(p.get("image_url", {}).get("url", "")).startswith("data:image/")
                for p in content
            )
            text = content if isinstance(content, str) else " ".join(
                p.get("text", "") for p in content if p.get("type") == "text")
            if "fail" in text:
                return self.error(500, "mock failure <b>not html</b>", "server_error", "internal")
            time.sleep(0.3)
            if has_image:
                reply = ("This looks like a sneaker: SN-003 Trail Runner ($89)\n"
                         "SN-007 Court Classic ($75) [KB-004]")
            else:
                reply = "You have 30 days to return an item [KB-001]\n<script>alert(1)</script>"
            cid = "chatcmpl-" + uuid.uuid4().hex[:12]
            COMPLETIONS.add(cid)
            return self.send_json(200, {
                "id": cid, "object": "chat.completion", "created": int(time.time()),
                "model": "retail-assistant",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": reply}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            })
        if self.path == "/v1/retail/feedback":
            if req.get("completion_id") not in COMPLETIONS or req.get("rating") not in ("up", "down"):
                return self.error(400, "unknown completion", "invalid_request_error", "bad_feedback")
            sys.stderr.write("mock: feedback %s\n" % json.dumps(req))
            return self.send_json(200, {"ok": True})
        return self.error(404, "not found", "invalid_request_error", "not_found")


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
