"""The contract between head node and workers: messages, bus, stores, planning."""
