"""FinFlow's server entry point: ``streamlit run serve.py`` (what ``make run`` starts).

Streamlit's ASGI mode (``st.App``, Streamlit 1.67) serves the ordinary app script ``app.py``
plus FinFlow's own routes and middleware (``finflow_app.server``): the route that sets the
HttpOnly session cookie which keeps a browser signed in over a reload, and the guard that
refuses uploads from anyone not signed in. ``streamlit run app.py`` still runs the app (and
AppTest runs ``app.py``), only without sessions that survive a reload and without the
upload guard. ``streamlit run`` finds ``app`` below by reading this file.
"""

import streamlit as st

from finflow_app.server import middleware, routes, use_navigation_only

use_navigation_only()
app = st.App("app.py", routes=routes(), middleware=middleware())
