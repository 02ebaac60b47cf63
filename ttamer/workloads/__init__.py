"""Producers of traces from real models (SPEC §3): multi-exit networks and model cascades, with
measured per-stage latency and an on-disk trace cache."""
