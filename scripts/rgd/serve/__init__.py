"""`rgd serve`: an OpenAI-compatible routing endpoint in front of a pool of model servers.

  endpoints.py  the endpoints file (every pool expert -> base URL, model name, key variable, timeout, cost)
  app.py        the Starlette application: routing, forwarding, failover, streaming, metrics
  limits.py     every bound of a request (deadline, sizes, depth, requests in flight) and the
                readers that keep to them
  commands.py   the subcommand: checks every input, loads the router and its embedder once, runs uvicorn
docs/SERVING.md is the user's guide.
"""
