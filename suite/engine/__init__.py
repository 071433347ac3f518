"""The training loop and what it measures: trainer, hooks, timing, events, distributed collectives, device
telemetry and the vendor tool readers, FLOP counting and event-log compliance."""
