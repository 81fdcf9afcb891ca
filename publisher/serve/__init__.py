"""`runletter serve`: the other end of every link in a message, and the providers' webhooks.

A Flask app in the shape of Flask's own tutorial: `app.create_app` (the factory), `pages`
(the reader pages' blueprint), `plans` (ready at a gated step, the calendar feed),
`webhooks` (the providers' blueprint), `db` (the request's store on `g`), `security` (CSRF,
headers, rate limit), `ui` (pages, links, error pages), `mailer` (the confirmation emails),
`server` (the app under gunicorn). The click command is `publisher/cli/serve.py`; what
each endpoint does, and why, is in docs/serve.md.

Nothing is re-exported here: a module of this package imports its siblings by their own
names, so importing one never runs the whole app (`from publisher.serve.app import
create_app`, `from publisher.serve.server import prepare`).
"""
