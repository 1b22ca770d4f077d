"""Runtime: HTTP edge, request pipeline, wire formats, upstreams, state, audit, CLI."""
