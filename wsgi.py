"""gunicorn entry point (`gunicorn wsgi:app`), and what `flask --app wsgi` loads.

A setting that cannot work (an unsupported DATABASE_URL, a time limit that
is not a number) ends the process with one line naming it, not a traceback.
"""
import sys

from app import create_app
from app.db import ConfigurationError

try:
    app = create_app()
except ConfigurationError as error:
    sys.exit(f"Configuration error: {error}")
