"""The floor below every app: process plumbing any app may use (Redis
clients, rate limits, per-event-loop singletons). It imports no app;
docs/architecture.md has the floors."""
