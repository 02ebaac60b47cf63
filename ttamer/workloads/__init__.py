"""Producers of traces from real models (README: workloads): multi-exit networks and model cascades, with
measured per-stage latency and an on-disk trace cache."""
