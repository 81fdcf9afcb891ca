"""`runletter preview`: a local page showing every goal's edition of a post, live.

It renders with the real pipeline (resolve → EmailRenderer → check_posts), so what the page
shows is what `runletter publish` would send. A watchfiles thread rebuilds when anything under
content/ or layouts/, runletter.toml or subscribers/goals.toml changes, and pushes a "reload"
event to `/events`; the page then re-fetches itself and its frames.

- workspace: the project as last loaded, and each post rendered for every goal
- watcher: the file watcher and the event broadcaster
- server: the HTTP server and its pages

The click command that starts it is `publisher/cli/preview.py`.
"""

from publisher.preview.server import PreviewServer
from publisher.preview.workspace import Workspace

__all__ = ["PreviewServer", "Workspace"]
