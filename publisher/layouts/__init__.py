"""The built-in layouts: `email/` (Jinja2 templates that produce MJML, and the plain-text part)
and `web/` (the archive's pages and serve's), which a newsletter's own `layouts/` overrides."""
