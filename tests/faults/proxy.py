"""A fault-injecting HTTP/1.1 proxy on loopback, between an agent and the centre.

Each request takes the next :class:`Fault` from the plan (then ``PASS`` once the
plan is used up). Faults happen where a real network fails:

- ``REFUSE``: the connection is closed before the request is read (centre down).
- ``CUT_AFTER_COMMIT``: the request reaches the centre, which commits and
  answers; the answer is dropped and the connection cut (the agent never learns).
- ``DUPLICATE``: the request is delivered to the centre twice (a retrying
  middlebox); the agent gets the second answer.
- ``ERROR_500``: a 500 answer without the centre seeing the request.
- ``ERROR_500_AFTER_COMMIT``: the centre commits, the agent gets a 500.
- ``SLOW``: the answer is held back for ``slow_s`` seconds.
"""

from __future__ import annotations

import enum
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable

IO_TIMEOUT_S = 10.0  # no request or answer in these tests takes longer


class Fault(enum.Enum):
    PASS = "pass"
    REFUSE = "refuse"
    CUT_AFTER_COMMIT = "cut_after_commit"
    DUPLICATE = "duplicate"
    ERROR_500 = "error_500"
    ERROR_500_AFTER_COMMIT = "error_500_after_commit"
    SLOW = "slow"


_BODY_500 = b'{"error":"proxy","detail":"injected fault","advice":"retry"}'
SYNTHETIC_500 = (b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\n"
                 b"content-length: " + str(len(_BODY_500)).encode() +
                 b"\r\nconnection: close\r\n\r\n" + _BODY_500)


def _read_message(sock: socket.socket, buf: bytearray) -> bytes | None:
    """One HTTP/1.1 message (headers + Content-Length body) from ``sock``; None at EOF."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buf += chunk
    head_end = buf.index(b"\r\n\r\n") + 4
    length = 0
    for line in bytes(buf[:head_end]).split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(buf) < head_end + length:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buf += chunk
    message = bytes(buf[: head_end + length])
    del buf[: head_end + length]
    return message


class FaultProxy:
    def __init__(self, upstream: tuple[str, int], plan: Iterable[Fault] = (),
                 slow_s: float = 0.5) -> None:
        self.upstream = upstream
        self.plan: deque[Fault] = deque(plan)
        self.slow_s = slow_s
        self.seen: list[tuple[Fault, str]] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._accepting.join(5)
        self._listener.close()

    def next_fault(self) -> Fault:
        with self._lock:
            return self.plan.popleft() if self.plan else Fault.PASS

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()

    def _forward(self, request: bytes) -> bytes:
        with socket.create_connection(self.upstream, timeout=IO_TIMEOUT_S) as up:
            up.sendall(request)
            answer = _read_message(up, bytearray())
        if answer is None:
            raise ConnectionError("the centre closed the connection without answering")
        return answer

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(IO_TIMEOUT_S)
        buf = bytearray()
        with conn:
            while not self._stop.is_set():
                fault = self.next_fault()
                if fault is Fault.REFUSE:
                    self.seen.append((fault, ""))
                    return  # closes before reading anything
                try:
                    request = _read_message(conn, buf)
                except OSError:
                    return
                if request is None:
                    with self._lock:
                        self.plan.appendleft(fault)  # unused: keep it for the next request
                    return
                self.seen.append((fault, request.split(b"\r\n", 1)[0].decode()))
                try:
                    if not self._answer(conn, fault, request):
                        return
                except OSError:
                    return

    def _answer(self, conn: socket.socket, fault: Fault, request: bytes) -> bool:
        if fault is Fault.ERROR_500:
            conn.sendall(SYNTHETIC_500)
            return False
        answer = self._forward(request)
        if fault is Fault.DUPLICATE:
            answer = self._forward(request)
        if fault is Fault.CUT_AFTER_COMMIT:
            conn.shutdown(socket.SHUT_RDWR)
            return False
        if fault is Fault.ERROR_500_AFTER_COMMIT:
            conn.sendall(SYNTHETIC_500)
            return False
        if fault is Fault.SLOW:
            time.sleep(self.slow_s)
        conn.sendall(answer)
        return True
