"""URLs under /api/."""

from __future__ import annotations

from django.urls import path

from calls.api import rest
from calls.api.rpc import RpcApi
from calls.api.tool import ToolApi

app_name = "api"
urlpatterns = [
    path("rpc", RpcApi.as_view(), name="rpc"),
    path("tools/voice_call", ToolApi.as_view(), name="tool"),
    path("calls/", rest.CallListCreateApi.as_view(), name="calls"),
    path("calls/<str:call_id>/", rest.CallDetailApi.as_view(), name="call"),
    path("calls/<str:call_id>/continue/", rest.CallContinueApi.as_view(), name="continue"),
    path("calls/<str:call_id>/speak/", rest.CallSpeakApi.as_view(), name="speak"),
    path("calls/<str:call_id>/dtmf/", rest.CallDtmfApi.as_view(), name="dtmf"),
    path("calls/<str:call_id>/end/", rest.CallEndApi.as_view(), name="end"),
    path("calls/<str:call_id>/transfer/", rest.CallTransferApi.as_view(), name="transfer"),
    path("calls/<str:call_id>/transcript/", rest.CallTranscriptApi.as_view(), name="transcript"),
    path("calls/<str:call_id>/events/", rest.CallEventsApi.as_view(), name="events"),
    path("calls/<str:call_id>/turns/", rest.CallTurnsApi.as_view(), name="turns"),
    path("latency/", rest.LatencyApi.as_view(), name="latency"),
]
