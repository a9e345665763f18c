"""The llm_call columns the statistics read, group by and filter on."""
from peewee import SQL

from ..models import LlmCall

METRIC_COLUMNS = {
    "call_duration": LlmCall.call_duration_ms,
    "input_tokens": LlmCall.input_tokens,
    "output_tokens": LlmCall.output_tokens,
}
OK = LlmCall.status == "ok"
# The columns the statistics can be grouped by and filtered on.
COLUMNS = {
    "tenant_id": LlmCall.tenant,
    "operation": LlmCall.operation,
    "model": LlmCall.model,
    "status": LlmCall.status,
    "error_class": LlmCall.error_class,
}
OK_LITERAL = LlmCall.status == SQL("'ok'")
