"""gunicorn's settings for the usage service:

    gunicorn -c gunicorn.conf.py wsgi:app

`make run` runs just that (its BIND, or HOST and PORT, WORKERS and TIMEOUT
become command-line options, which win over this file, as GUNICORN_CMD_ARGS
does). gunicorn also reads this file by itself when started in this folder.

The address comes from the environment: BIND (`127.0.0.1:8000`,
`unix:/run/usage.sock`), else HOST and PORT; 127.0.0.1:8000 by default.

In production gunicorn listens on loopback behind nginx, whose file
`flask --app wsgi deploy nginx-conf` renders from deploy/nginx.conf.template
with the same address. nginx reads whole requests before passing them on and
takes whole answers at once: a sync worker then never waits on a slow
client. Without nginx, each slow client holds a worker for as long as it
likes (`make run` is for development).
"""
import atexit
import gc
import multiprocessing
import os
import shutil
import tempfile

# Metrics first: prometheus_client chooses its multiprocess mode when it is
# first imported, from PROMETHEUS_MULTIPROC_DIR, and the workers inherit the
# master's environment. Every worker writes its values in files there and
# /metrics adds them up (app/metrics.py).
# Without PROMETHEUS_MULTIPROC_DIR, a temporary one, removed when the
# master exits, however it exits (a failed start too). Workers leave with
# os._exit and never run it.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="usage-metrics-")
    atexit.register(shutil.rmtree, os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
METRICS_DIR = os.environ["PROMETHEUS_MULTIPROC_DIR"]

from app.cli.deploy import bind_address, worker_timeout  # noqa: E402  (after the metrics directory is set)
from app.db.handle import Limits  # noqa: E402

# BIND, else HOST:PORT; by default 127.0.0.1:8000, loopback only: nginx is
# the one that faces clients, and `flask --app wsgi deploy nginx-conf` gives
# it the same address (app/cli/deploy.py). A --bind option (`make run`) or
# GUNICORN_CMD_ARGS wins over this.
bind = bind_address()

# Sync workers, each serving one request at a time; requests mostly wait on
# the database, so two per core and one more (gunicorn's advice). At most 12:
# a worker holds up to two PostgreSQL connections (its request's and
# /readyz's probe), well under PostgreSQL's default max_connections of 100.
# WEB_CONCURRENCY sets it, as for gunicorn itself.
workers = int(os.environ.get("WEB_CONCURRENCY") or min(2 * multiprocessing.cpu_count() + 1, 12))
worker_class = "sync"


def _seconds(variable, default):
    try:
        return float(os.environ.get(variable) or default)
    except ValueError:
        return default  # the app refuses it at start, naming the variable


# gunicorn's timeout is the last resort for a worker stuck beyond every
# database limit: the app answers 503 once a limit passes (DB_CONNECT_TIMEOUT
# to connect, DB_STATISTICS_TIMEOUT or DB_STATEMENT_TIMEOUT for the queries,
# each with 1 s of grace for the client-side deadline: 34 s by default), so
# this is twice that, and at least 60 s, to leave room to build a large
# answer. nginx's proxy_read_timeout (deploy/nginx.conf.template, rendered
# with this same number and 7 s more) is longer still, so that the worker's
# answer, even a 503, is what the client gets.
timeout = worker_timeout(_seconds("DB_CONNECT_TIMEOUT", Limits().connect),
                         _seconds("DB_STATISTICS_TIMEOUT", Limits().statistics),
                         _seconds("DB_STATEMENT_TIMEOUT", Limits().statement))
# On SIGTERM or a reload, requests under way may finish within the same limit.
graceful_timeout = timeout

# Request line and each header field up to 8 KB, as nginx's
# large_client_header_buffers (4 8k): nginx answers longer ones itself (414,
# 431, JSON); a client talking to gunicorn directly gets gunicorn's 400.
limit_request_line = 8190
limit_request_field_size = 8190
limit_request_fields = 100

# The service writes one line per request itself, with what gunicorn cannot
# know (route, tenant, key id), in LOG_FORMAT (app/logs.py); so gunicorn's
# access log is off (its logger at WARNING, below). Set that logger to INFO
# for gunicorn's line too, in this format:
accesslog = None
access_log_format = '%(h)s "%(r)s" %(s)s %(B)s %(M)s ms request_id=%({x-request-id}o)s'
errorlog = "-"
loglevel = "info"
# gunicorn's own lines (workers booting, timeouts) in the service's format,
# so that a LOG_FORMAT=json log is JSON on every line.
_formatter = "app.logs.JsonFormatter" if os.environ.get("LOG_FORMAT", "").strip().lower() == "json" \
    else "app.logs.TextFormatter"
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": "WARNING", "handlers": []},  # the app adds its handler in each worker
    "formatters": {"service": {"()": _formatter}},
    "handlers": {"stderr": {"class": "app.logs.StderrHandler", "formatter": "service"}},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
        "gunicorn.access": {"level": "WARNING", "handlers": ["stderr"], "propagate": False},
    },
}


# No control socket (gunicornc): every gunicorn of a user shares its default
# path, and the service does not need it.
control_socket_disable = True


def on_starting(server):
    """A new master: files left by an earlier run would add their counts to ours."""
    for name in os.listdir(METRICS_DIR):
        if name.endswith(".db"):
            os.remove(os.path.join(METRICS_DIR, name))


def child_exit(server, worker):
    """A worker ended: its counters stay in the sums, its live gauges go."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):
    """Answers that stream longer than `timeout` (the call log's exports) check
    in for the worker as they go (app/liveness.py); and the worker's garbage
    collector is tuned (`GC_THRESHOLDS`)."""
    from app import liveness

    liveness.install(worker.notify)
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


# Python's garbage collector looks for reference cycles among the objects
# made since it last did, every 700 new ones, and now and then among all
# objects: those the worker made at start too (the app, its schemas and
# models, NumPy's modules), some hundreds of thousands. A request building
# thousands of groups (a series by tenant) or a batch of 1000 calls makes
# objects by the hundred thousand, few in cycles (the rest go as soon as
# they are unused), so collections took a fifth of such a request's time.
# So each worker, once it has loaded the app, moves every object it holds
# out of the collector's sight (gc.freeze) and looks for cycles among new
# objects every 10,000, and among older ones ten times less often than that.
# Measured: docs/benchmarks.md.
GC_THRESHOLDS = (10_000, 20, 20)
