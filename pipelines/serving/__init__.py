"""What wires a trained run folder to the Feast store: scoring as of a time, offline or online, and the HTTP service."""
