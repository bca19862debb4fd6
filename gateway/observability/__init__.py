"""What a running security server tells its operators about itself.

``metrics`` (Prometheus counters and histograms, and the state read at scrape time),
``exchange`` (one exchange observed: step timings, the exchange counter, the
operational monitoring record, one log event per pipeline step) and ``opmon``
(operational monitoring records in SQLite, X-Road's pr-opmon fields, and health
statistics per service).  Serving them (``GET /metrics``, the management API) is left
to the listeners.
"""

__all__: list[str] = []
