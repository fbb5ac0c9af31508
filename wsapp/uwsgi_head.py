"""The request head as uWSGI's HTTP parser leaves it, held to wsapp's rules (RFC 9112).

Under pywsgi and gunicorn wsapp parses request headers itself (`wsapp.protocol.request_head`).
Under uWSGI (`http-socket`) uWSGI's parser has already built the environ, and it is lax
where wsapp is not: a header name with a space in it (``Bad Name: x``, or whitespace
before the colon) becomes ``HTTP_BAD NAME``; an obs-fold continuation stays inside the
value as CRLF + space, so ``Connection: keep-alive,`` + `` Upgrade`` is no upgrade to
Werkzeug; control characters pass. `check_environ` applies what can still be seen:

- a header name that is not an RFC 9110 token: 400;
- obs-fold replaced by a space (RFC 9112 5.2), in place;
- a control character other than HTAB in a value (RFC 9110 5.5): 400.

A line without a colon, or with an empty name, never reaches Python: uWSGI closes the
connection without an answer and logs "invalid HTTP request" (nginx in front answers such
requests 400 itself, docs/deploy.md).
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping

from wsapp.logsafe import escape

# RFC 9110 5.6.2 token, as uWSGI spells names in the environ: upper case, "-" turned to "_".
_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Z]+")
_FOLD = re.compile(r"\r?\n[ \t]+")
# RFC 9110 5.5: HTAB, SP, VCHAR and obs-text only.
_CTL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_UNPREFIXED = ("CONTENT_TYPE", "CONTENT_LENGTH")


def check_environ(environ: MutableMapping[str, object]) -> str | None:
    """Unfold obs-fold in the header values of `environ` (in place); why the request is
    refused with 400, or None."""
    for key in [k for k in environ if k.startswith("HTTP_") or k in _UNPREFIXED]:
        value = environ[key]
        if key.startswith("HTTP_") and _NAME.fullmatch(key, 5) is None:
            return f"malformed request header name {escape(key[5:].replace('_', '-'))!r}"
        if not isinstance(value, str):
            continue
        if "\n" in value:
            value = _FOLD.sub(" ", value).strip(" \t")
            environ[key] = value
        if _CTL.search(value) is not None:
            name = key[5:] if key.startswith("HTTP_") else key
            return f"control character in request header {name.replace('_', '-').title()}"
    return None
