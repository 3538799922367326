"""Framework integrations: small helpers that let a framework's own code reach tidings.

Each module imports its framework, so import the one you use (``tidings.integrations.webpy``,
``tidings.integrations.web2py``, ...); this package imports none of them.
"""
