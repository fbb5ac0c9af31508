"""The WSGI module deploy/uwsgi.ini names: `module = wsapp.uwsgi_app` (callable `application`).

Importing it builds the app, in each uWSGI worker (`lazy-apps`): wsapp's own echo and chat,
or the app the uWSGI option `wsapp-app` names (`module:app` or `module:factory()`), wrapped
by `wsapp.uwsgi_glue.wrap`. uWSGI reads `application` from the module's dictionary, so it
is made here at import rather than on first access.
"""

from __future__ import annotations

from wsapp.uwsgi_glue import load_configured

application = load_configured()
