"""Telling gunicorn's master that a worker busy with one long answer is alive.

gunicorn kills a worker that has not checked in for `timeout` seconds, and a
sync worker checks in only between requests: an answer that streams for
longer (a large export of the call log) would be cut off half-way. Its
`post_worker_init` hook (gunicorn.conf.py) hands the worker's check-in here,
and a streaming answer calls `notify()` after each piece it has sent: a
worker that keeps making progress lives, one stuck (a database that stopped
answering, a client that stopped reading) is still killed after `timeout`.
Outside gunicorn (tests, `flask run`) it does nothing.
"""

_notify = None


def install(notify):
    """`notify`: the worker's check-in (gunicorn's `Worker.notify`)."""
    global _notify
    _notify = notify


def notify():
    if _notify is not None:
        _notify()
