"""The HTTP API: the Task API and the operator endpoints."""
