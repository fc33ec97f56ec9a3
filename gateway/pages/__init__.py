"""The web pages' foundation, shared by the customer portal (gateway/portal) and the
operator dashboard (gateway/dashboard): server-rendered HTML, nothing from a CDN.

templating.py  Jinja2 (autoescaped) templates in templates/, ``render`` with the session,
               CSRF token and security headers
cookies.py     the cookies: names, flags (Secure behind HTTPS), the pre-session CSRF token
sessions.py    sign-in sessions stored server-side (only the token's SHA-256), CSRF checks,
               ``require_user`` / ``require_operator``
forms.py       ``read_form``: a POST form's fields (urlencoded; no python-multipart)
exits.py       ``PageExit``: a handler stops with a ready response (a redirect, a 403 page)
charts.py      accessible server-drawn SVG bar charts
routes.py      the static files at /static
"""
