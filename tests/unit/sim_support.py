"""Helpers shared by the kiesim test modules (accounts, images, faults): a small client of the
simulator written from the upstream API description (not from kiesim), a callback receiver
and a deadline-bounded wait.  Everything talks real HTTP."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

CREATE = "/api/v1/jobs/createTask"
RECORD = "/api/v1/jobs/recordInfo"
CREDIT = "/api/v1/chat/credit"


class Kie:
    """One account's view of the simulator (its own Bearer key)."""

    def __init__(self, url: str, api_key: str):
        self.url = url
        self.headers = {"Authorization": f"Bearer {api_key}", "User-Agent": "kiesim-tests/1"}

    def create(self, prompt: str = "a cat", *, model: str = "google/nano-banana", callback: str | None = None,
               timeout: float = 10, **input_fields) -> requests.Response:
        body = {"model": model, "input": {"prompt": prompt, **input_fields}}
        if callback:
            body["callBackUrl"] = callback
        return requests.post(self.url + CREATE, json=body, headers=self.headers, timeout=timeout)

    def create_code(self, prompt: str = "a cat", **kw) -> int:
        return self.create(prompt, **kw).json()["code"]

    def create_ok(self, prompt: str = "a cat", **kw) -> str:
        response = self.create(prompt, **kw)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["code"] == 200, body
        return body["data"]["taskId"]

    def record(self, task_id: str) -> dict:
        response = requests.get(self.url + RECORD, params={"taskId": task_id}, headers=self.headers, timeout=10)
        assert response.status_code == 200
        return response.json()

    def credit(self) -> dict:
        return requests.get(self.url + CREDIT, headers=self.headers, timeout=10).json()

    def wait_done(self, task_id: str, deadline: float = 10.0) -> dict:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            data = self.record(task_id)["data"]
            if data["state"] in ("success", "fail"):
                return data
            time.sleep(0.02)
        raise AssertionError(f"task {task_id} not finished after {deadline}s")

    def states_until_done(self, task_id: str, deadline: float = 5.0) -> tuple[dict, list[str]]:
        """Poll recordInfo until a terminal state; returns the last data and every state seen."""
        seen: list[str] = []
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            data = self.record(task_id)["data"]
            if not seen or seen[-1] != data["state"]:
                seen.append(data["state"])
            if data["state"] in ("success", "fail"):
                return data, seen
            time.sleep(0.02)
        raise AssertionError(f"task {task_id} not finished after {deadline}s; states {seen}")

    def config(self, **knobs) -> dict:
        return configure(self.url, **knobs)

    def stats(self) -> dict:
        return stats(self.url)

    def result_urls(self, task_id: str) -> list[str]:
        return json.loads(self.wait_done(task_id)["resultJson"])["resultUrls"]


def control(url: str, path: str, method: str = "POST", body=None) -> requests.Response:
    return requests.request(method, url + path, json=body, timeout=10)


def configure(url: str, **knobs) -> dict:
    response = control(url, "/_sim/config", body=knobs)
    assert response.status_code == 200, response.text
    return response.json()


def stats(url: str) -> dict:
    return requests.get(url + "/_sim/stats", timeout=10).json()


def task(url: str, task_id: str) -> dict:
    response = requests.get(f"{url}/_sim/tasks/{task_id}", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def wait_until(predicate, deadline: float = 5.0, what: str = "condition"):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"{what} not reached within {deadline}s")


class Receiver:
    """Records every POST (arrival time, path, headers, parsed ``body`` and ``raw`` bytes); answers with the
    next status from ``statuses`` (then 200), recorded as ``answered``."""

    def __init__(self):
        self.records: list[dict] = []
        self.statuses: list[int] = []
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._cond:
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    receiver.records.append({"time": time.time(), "path": self.path, "headers": dict(self.headers),
                                             "body": json.loads(raw), "raw": raw, "answered": status})
                    receiver._cond.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def wait_for(self, count: int, deadline: float = 5.0) -> list[dict]:
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.records) >= count, timeout=deadline)
            assert ok, f"expected {count} callbacks within {deadline}s, got {len(self.records)}"
            return list(self.records)

    def bodies(self) -> list[dict]:
        with self._cond:
            return [r["body"] for r in self.records]

    def snapshot(self) -> list[dict]:
        with self._cond:
            return list(self.records)

    def for_task(self, task_id: str) -> list[dict]:
        with self._cond:
            return [r for r in self.records if r["body"]["data"].get("taskId") == task_id]

    def close(self):
        self._server.shutdown()
        self._server.server_close()
