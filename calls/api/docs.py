"""The browsable API docs page (Swagger UI, served from our static files).

A browser that is not signed in is sent to the admin login and back, not shown a bare 401
page: the page is for people, who sign in there (docs/operations.md, "API docs").
"""

from __future__ import annotations

from django.contrib.auth.views import redirect_to_login
from django.http import HttpResponseBase
from django.urls import reverse
from drf_spectacular.views import SpectacularSwaggerView
from rest_framework.exceptions import NotAuthenticated


class ApiDocsView(SpectacularSwaggerView):
    # DRF's finalize_response takes any HttpResponseBase; the stubs narrow it to Response.
    def handle_exception(self, exc: Exception) -> HttpResponseBase:  # type: ignore[override]
        # Only "no credentials": a script's wrong bearer token still gets its 401.
        if isinstance(exc, NotAuthenticated):
            return redirect_to_login(self.request.get_full_path(), reverse("admin:login"))
        return super().handle_exception(exc)
