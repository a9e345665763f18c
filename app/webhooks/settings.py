"""WEBHOOK_RETRY_DELAYS and WEBHOOK_TIMEOUT, checked when the app is created."""
from ..db import ConfigurationError

# The Standard Webhooks schedule: after a failed first attempt, retries 5 s,
# 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h and 24 h after the attempt before.
RETRY_DELAYS_DEFAULT = "5,300,1800,7200,18000,36000,50400,72000,86400"
TIMEOUT_DEFAULT = 15
# Bounds that keep every instant computed from them representable.
MAX_DELAY = 7 * 86400
MAX_TIMEOUT = 600


def check_settings(config):
    """Both settings of `config` parsed in place (text or already numbers);
    ConfigurationError naming the one that is not valid."""
    config["WEBHOOK_RETRY_DELAYS"] = _retry_delays(config["WEBHOOK_RETRY_DELAYS"])
    config["WEBHOOK_TIMEOUT"] = _timeout(config["WEBHOOK_TIMEOUT"])


def _retry_delays(value):
    """Comma-separated seconds (or a sequence of numbers): a tuple of floats."""
    parts = value.split(",") if isinstance(value, str) else list(value)
    delays = [_number(part) for part in parts]
    if not delays or any(delay is None or not 0 <= delay <= MAX_DELAY for delay in delays):
        raise ConfigurationError(
            f"WEBHOOK_RETRY_DELAYS must be comma-separated seconds from 0 to {MAX_DELAY}, "
            f"e.g. {RETRY_DELAYS_DEFAULT}, not {value!r}")
    return tuple(delays)


def _timeout(value):
    seconds = _number(value)
    if seconds is None or not 0 < seconds <= MAX_TIMEOUT:
        raise ConfigurationError(f"WEBHOOK_TIMEOUT must be a number of seconds above 0 and at most "
                                 f"{MAX_TIMEOUT}, not {value!r}")
    return seconds


def _number(value):
    try:
        return float(str(value).strip())
    except ValueError:
        return None
