"""A webhook receiver for tests: an HTTP server on 127.0.0.1 (a free port, a
thread per request) that answers each POST as told and keeps what it got."""
import collections
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

OK = (200, {})
HOLD = "hold"  # answer 200 once `release()` is called
TRICKLE = "trickle"  # a status line, then a header byte every 0.2 s for 10 s
TOGETHER = "together"  # wait until `together` requests are in flight at once, then 200
LONGEST_WAIT = 30  # seconds any held request waits at most, so a failed test cannot hang


class Receiver:
    def __init__(self, together=3):
        self.received = []  # (headers with lower-case names, body bytes), in arrival order
        self.answers = collections.deque()  # HOLD, TRICKLE, TOGETHER or (status, headers); then OK
        self.released = threading.Event()
        self.barrier = threading.Barrier(together, timeout=LONGEST_WAIT)
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook?source=usage"

    def answer(self, *answers):
        self.answers.extend(answers)

    def release(self):
        self.released.set()

    def wait_for(self, count, seconds=20):
        """Wait until `count` requests arrived (at most `seconds`); return how many did."""
        ends = time.monotonic() + seconds
        while len(self.received) < count and time.monotonic() < ends:
            time.sleep(0.02)
        return len(self.received)

    def ids(self):
        return [headers["webhook-id"] for headers, _ in self.received]

    def close(self):
        self.release()
        self.server.shutdown()
        self.server.server_close()


def _handler(receiver):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with receiver.lock:
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                answer = receiver.answers.popleft() if receiver.answers else OK
            if answer == HOLD:
                receiver.released.wait(LONGEST_WAIT)
                answer = OK
            elif answer == TOGETHER:
                receiver.barrier.wait()
                answer = OK
            elif answer == TRICKLE:
                return self._trickle()
            status, headers = answer
            self.send_response(status)
            for name, value in {**headers, "Content-Length": "0"}.items():
                self.send_header(name, value)
            self.end_headers()

        def _trickle(self):
            try:
                self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                for _ in range(50):
                    if receiver.released.wait(0.2):
                        break
                    self.wfile.write(b"a")
                self.wfile.write(b"\r\nContent-Length: 0\r\n\r\n")
            except OSError:  # the sender gave up
                self.close_connection = True

        def log_message(self, *args):
            pass

    return Handler
