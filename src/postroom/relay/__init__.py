"""SMTP: submission with an API key as the password, and intake of bounces and complaints (``listener.py``)."""
