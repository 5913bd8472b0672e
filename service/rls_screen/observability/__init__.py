"""What an on-call engineer sees of the module: Prometheus metrics, OpenTelemetry traces, JSON logs, progress.

- ``metrics``: the counters and histograms (``get_metrics()``), their bounded label values, the text
  served at ``GET /metrics`` (prometheus-client's multiprocess mode with several uvicorn workers) and the
  push of a batch job's figures to a Pushgateway.
- ``tracing``: the tracer provider (OTLP over HTTP when RLS_SCREEN_OTLP_ENDPOINT is set, off otherwise)
  and the server span of each CDS request, continuing the caller's W3C ``traceparent``.
- ``cds_calls``: what the CDS app reports per call (latency by outcome, cards, suppression, deadline,
  JWT refusals) and the hookInstance it binds to the call's logs and span.
- ``fhir_calls``: what the one FHIR seam (``fhir_client``) reports per request: a client span whose
  ``traceparent`` goes to the FHIR server, request, retry and error counters.
- ``logs``: one JSON event per line when stderr is not a terminal, text on a terminal; correlation ids
  (hookInstance, batch job id, trace id) from context variables.
- ``progress``: batch progress as a tqdm bar on a terminal, periodic log lines otherwise.
- ``settings``: the knobs of all of the above (RLS_SCREEN_LOG_FORMAT, RLS_SCREEN_OTLP_ENDPOINT, ...).

Nothing here puts PHI in a label, attribute or log field: no patient id, reference, URL or query string;
resource types, service ids, finding codes, status codes and error class names only.
"""
