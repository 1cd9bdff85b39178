"""An interactive range-map viewer for trained SINR runs (`python -m sinr_jax.viewer --run=...`).

  sources.py   a run's side data: taxon names, training observations, true/expert ranges
  ranges.py    one species' range at an H3 resolution, with the encoded cells cached
  api.py       the JSON API (validated, bounded requests)
  server.py    the stdlib HTTP server: page, static files, API
  __main__.py  the command line
  static/      the page (index.html, app.js, app.css) and vendor/ (Leaflet, h3-js: built from
               npm by `make viewer-assets`, not committed)
See README.md beside this file.
"""
from sinr_jax.viewer.api import Api, Limits
from sinr_jax.viewer.server import make_server, serve_in_thread
from sinr_jax.viewer.sources import RunSource

__all__ = ["Api", "Limits", "RunSource", "make_server", "serve_in_thread"]
