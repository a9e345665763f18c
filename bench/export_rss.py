"""How much memory the call log's export takes: rows, seconds and the peak
RSS of the gunicorn worker that serves it.

`measure_export(base_url, superuser_key, accept)` streams every call of
GET /v1/usage/all/calls (`accept`: application/x-ndjson or text/csv) from a
running service, reading it as it arrives, and reports the rows, the
seconds, and the serving worker's resident memory: its VmRSS before, and
its VmHWM (peak) during the export. The workers are the processes that hold
the service's listening socket and whose parent holds it too (gunicorn's
master); the serving one is the worker that used the most CPU time during
the export. Their peaks are reset first (`echo 5 > /proc/PID/clear_refs`,
which needs the workers' user or root) so that the peak is the export's
own, not that of an earlier request; where that is not allowed the report
says so, and the peak may then be older than the export.

The export streams a chunk of calls at a time (app/repository/calls_log.py,
CHUNK_ROWS), so the peak should not grow with the number of calls: compare
two runs at different scales (bench.py's --ladder) to see it.

Standalone, against any running service on this machine (Linux /proc):

    python bench/export_rss.py --base-url http://127.0.0.1:8000 --key "$ADMIN_KEY"
    python bench/export_rss.py --base-url ... --key ... --accept text/csv --pid 12345
    python bench/export_rss.py --base-url ... --key ... --query tenant_id=acme

`--accept` may be repeated (default: both formats); `--pid` names the
workers instead of finding them; `--query` exports fewer calls.
"""
import argparse
import csv
import io
import os
import time
import urllib.request
from urllib.parse import urlencode, urlsplit

ACCEPTS = ("application/x-ndjson", "text/csv")
PATH = "/v1/usage/all/calls"
READ_BYTES = 1 << 16


def _status(pid, field):
    """A field of /proc/PID/status in KiB (VmRSS, VmHWM)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(f"no {field} for process {pid}")


def _cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _parent(pid):
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def _listening_inodes(port):
    """Inodes of the sockets listening on `port` (any address)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as rows:
                next(rows)
                for row in rows:
                    fields = row.split()
                    if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # LISTEN
                        inodes.add(fields[9])
        except FileNotFoundError:
            continue
    return inodes


def worker_pids(base_url):
    """The gunicorn workers serving `base_url`: processes holding its
    listening socket whose parent holds it too."""
    port = urlsplit(base_url).port or 80
    sockets = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    holders = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{name}/fd")
            if any(os.readlink(f"/proc/{name}/fd/{fd}") in sockets for fd in fds):
                holders.add(int(name))
        except OSError:
            continue  # gone, or not ours to read
    workers = sorted(pid for pid in holders if _parent(pid) in holders)
    if not workers:
        raise SystemExit(f"no gunicorn worker found listening on port {port}: pass --pid")
    return workers


def _reset_peak(pid):
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as clear:
            clear.write("5")
        return True
    except OSError:
        return False


def _count_rows(response, accept):
    """(rows, bytes) of the streamed answer, read as it arrives."""
    if accept == "text/csv":
        counted = _CountingReader(response)
        rows = sum(1 for _ in csv.reader(io.TextIOWrapper(counted, encoding="utf-8", newline=""))) - 1
        return rows, counted.size
    rows = size = 0
    while chunk := response.read(READ_BYTES):
        rows += chunk.count(b"\n")
        size += len(chunk)
    return rows, size


class _CountingReader(io.RawIOBase):
    def __init__(self, response):
        self.response, self.size = response, 0

    def readable(self):
        return True

    def readinto(self, buffer):
        data = self.response.read(min(len(buffer), READ_BYTES))
        buffer[:len(data)] = data
        self.size += len(data)
        return len(data)


def measure_export(base_url, superuser_key, accept, pids=None, params=None, timeout=3600):
    """Stream the export of every tenant's calls (`params`: a query, e.g.
    {"tenant_id": "acme"}, to export fewer); return a dict: accept, rows,
    bytes, seconds, rows_per_second, worker (pid), rss_before_kib (the
    serving worker's VmRSS before), peak_rss_kib (its VmHWM during the
    export), peak_reset (whether the peaks could be reset first)."""
    pids = list(pids or worker_pids(base_url))
    reset = all([_reset_peak(pid) for pid in pids])
    before = {pid: (_status(pid, "VmRSS"), _cpu_ticks(pid)) for pid in pids}
    query = f"?{urlencode(params, doseq=True)}" if params else ""
    request = urllib.request.Request(base_url.rstrip("/") + PATH + query,
                                     headers={"X-API-Key": superuser_key, "Accept": accept})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=timeout) as response:
        rows, size = _count_rows(response, accept)
    seconds = time.perf_counter() - started
    serving = max(pids, key=lambda pid: _cpu_ticks(pid) - before[pid][1])
    return {"accept": accept, "rows": rows, "bytes": size, "seconds": seconds,
            "rows_per_second": rows / seconds if seconds else 0.0, "worker": serving,
            "rss_before_kib": before[serving][0], "peak_rss_kib": _status(serving, "VmHWM"),
            "peak_reset": reset}


def report(result):
    """One line of a measurement, as bench.py prints its own."""
    note = "" if result["peak_reset"] else "  (peak not reset: may predate the export)"
    return (f"export {result['accept']:<22}{result['rows']:>12,} rows{result['seconds']:>9.1f} s"
            f"{result['rows_per_second']:>11,.0f} rows/s  worker {result['worker']}: RSS "
            f"{result['rss_before_kib'] / 1024:,.1f} MiB before, peak {result['peak_rss_kib'] / 1024:,.1f} MiB{note}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", required=True, help="the running service, e.g. http://127.0.0.1:8000")
    parser.add_argument("--key", required=True, help="a key with the scope all:read")
    parser.add_argument("--accept", action="append", choices=ACCEPTS, help="format (repeat; default both)")
    parser.add_argument("--pid", type=int, action="append", help="a worker's pid (repeat; default: found)")
    parser.add_argument("--query", action="append", default=[], metavar="NAME=VALUE",
                        help="a parameter of the export, e.g. tenant_id=acme or from=2026-11-01T00:00:00Z (repeat)")
    args = parser.parse_args()
    params = [tuple(item.split("=", 1)) for item in args.query]
    for accept in args.accept or ACCEPTS:
        print(report(measure_export(args.base_url, args.key, accept, args.pid, params)))


if __name__ == "__main__":
    main()
