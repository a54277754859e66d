"""Reaching AI providers for a generation, one module per job:

- `failover`: the model's route list, tried in order (an open breaker or an unconfigured
  provider skips a route, a full provider makes the work wait, a failed route hands over to
  the next one, a content rejection ends it);
- `retries`: one call to one provider, retried with backoff and the provider's Retry-After,
  and counted by its circuit breaker;
- `deps`: what a process needs to reach providers (registry, breakers, limits, policies);
- `call_context`: which generation and request the calls made meanwhile belong to (read by
  the API call log and the error events).

Imports point one way (failover -> retries -> call_context; deps -> retries), and nothing
here imports the API call log, which reads `call_context`."""
