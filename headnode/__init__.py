"""The head node: the Flask app, job control, aggregation, fleet, CLI."""
