# ruff: noqa: F821 - web2py runs controllers with request, session ... in their globals


def index():
    session.visits = (session.visits or 0) + 1
    return dict(visits=session.visits)
