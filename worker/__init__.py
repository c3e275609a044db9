"""The stateless worker: receive a task, execute it, verify, publish an event."""
