"""llmkg-server: the HTTP API (Starlette on uvicorn) over the allocation engine."""
