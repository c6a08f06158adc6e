"""WSGI entry point (admin and API only; webhooks and streams need ASGI)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voicecall_project.settings")
application = get_wsgi_application()
