"""The route module that puts the morphml page into a scheduler's dashboard.

Name it in ``distributed.scheduler.http.routes`` (what `morphml_dask.dashboard.enable`
does) before the scheduler starts. Importing it adds the Bokeh page ``/morphml`` to the
dashboard's applications, which the scheduler reads after the route modules, and serves the
searches' counters as JSON at ``/morphml/state.json``.
"""

from __future__ import annotations

import json
from typing import Any

from distributed.http.utils import RequestHandler

from morphml_dask.dashboard._extension import boards_of

__all__ = ["routes"]


class SearchStateHandler(RequestHandler):
    """``GET /morphml/state.json``: the counters of every search the scheduler heard of."""

    def get(self) -> None:
        boards = boards_of(self.server).boards
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps({run: board.summary() for run, board in boards.items()}))


def _add_page() -> None:
    try:
        from distributed.dashboard import scheduler as dashboard
    except ImportError:  # no bokeh: distributed serves no dashboard pages at all
        return
    from morphml_dask.dashboard._page import morphml_doc

    dashboard.applications.setdefault("/morphml", morphml_doc)
    # Pages whose path starts with "individual-" are listed in the dashboard's "More" menu.
    dashboard.applications.setdefault("/individual-morphml", morphml_doc)


_add_page()

routes: list[tuple[str, Any, dict[str, Any]]] = [
    ("morphml/state.json", SearchStateHandler, {}),
]
