"""Cost of the observability hooks per use: a labelled counter, a histogram, one log event as JSON and as text.

Run: .venv/bin/python bench/observability_cost.py (add PROMETHEUS_MULTIPROC_DIR=DIR for multiprocess mode).
"""

import logging
import timeit

from rls_screen.observability import logs, metrics

m = metrics.get_metrics()
n = 200000
t = timeit.timeit(lambda: m.fhir_requests.labels("GET", "Observation", "200").inc(), number=n) / n
print(f"counter labels().inc(): {t * 1e6:.2f} us")
t = timeit.timeit(lambda: m.fhir_request_seconds.labels("GET", "Observation").observe(0.012), number=n) / n
print(f"histogram labels().observe(): {t * 1e6:.2f} us")
rec = logging.LogRecord(
    "rls_screen.cds",
    logging.INFO,
    "x",
    1,
    "cds: %s %s hook_instance=%s cards=%d in %.0f ms",
    ("rls-secondary-causes", "patient-view", "2f0d-..", 2, 41.0),
    None,
)
logs.CorrelationFilter().filter(rec)
j, tx = logs.JsonFormatter(), logging.Formatter(logs.TEXT_FORMAT)
n = 50000
print(f"JSON format of one event: {timeit.timeit(lambda: j.format(rec), number=n) / n * 1e6:.2f} us")
print(f"text format of one event: {timeit.timeit(lambda: tx.format(rec), number=n) / n * 1e6:.2f} us")
print(f"correlation filter: {timeit.timeit(lambda: logs.CorrelationFilter().filter(rec), number=n) / n * 1e6:.2f} us")
