"""The classic gevent-websocket echo, unchanged, served by wsapp (docs/routes.md).

    python -m wsapp serve app:app --port 8000
    gunicorn -c ../../gunicorn.conf.py app:app      # or a copy of it next to this file

Then `python -m wsapp client ws://127.0.0.1:8000/echo`, or open http://127.0.0.1:8000/.
"""

from flask import Flask, request

app = Flask(__name__)

PAGE = """<!doctype html>
<title>classic echo</title>
<p>WebSocket echo at <code>/echo</code>: <code>python -m wsapp client ws://HOST/echo</code></p>
"""


@app.get("/")
def index() -> str:
    return PAGE


@app.route("/echo", websocket=True)
def echo() -> str:
    ws = request.environ["wsgi.websocket"]
    while True:
        message = ws.receive()  # str (text), bytes (binary), or None: the connection is over
        if message is None:
            break
        ws.send(message)  # back as it came: text as text, binary as binary
    return ""  # returning closes the connection with 1000
