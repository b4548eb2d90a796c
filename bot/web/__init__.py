"""The operators' web console (Starlette + Jinja2, server-rendered).

    app.py         the app put together: login, logout, middleware (`create_app`)
    site.py        what every page shares: console parts, login guard, security headers, charts
    appeals.py     the appeals pages (list, one appeal, status, files, export)
    knowledge.py   unmatched messages (teach a phrasing), the knowledge base, charts, audit log
    review.py      conversation review: transcripts, the misread filter, labels (learned.yaml + a case)
    funnel.py      the appeal funnel on /stats as SVG, the period picked
    auth.py        passwords, sessions, CSRF, lockout;  serve.py: `python -m bot web`
"""
