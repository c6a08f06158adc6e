"""REST resources under /api/calls/: list/create, detail, in-call actions, transcript, events."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from calls.api.methods import spoken_result
from calls.exceptions import CallNotFound
from calls.models import Call, CallEvent, TranscriptEntry
from calls.selectors import call_as_dict, call_find, call_list
from calls.services.actions import call_end, call_send_dtmf, call_speak
from calls.services.dialling import call_initiate
from calls.services.transfer import call_transfer
from calls.services.turn_records import (
    LatencyFilter,
    latency_summary,
    since_parse,
    turn_as_dict,
)
from calls.services.turns import call_continue
from calls.state import CallState


class CallOutputSerializer(serializers.Serializer):
    """The status view of a call; built by selectors.call_as_dict."""

    def to_representation(self, instance: Call) -> dict:
        data = call_as_dict(instance)
        data["metadata"] = instance.metadata
        return data


def _get_call(call_id: str) -> Call:
    call = call_find(call_id)
    if call is None:
        raise CallNotFound()
    return call


class CallListCreateApi(ListAPIView):
    serializer_class = CallOutputSerializer

    class CallCreateInputSerializer(serializers.Serializer):
        to = serializers.CharField(required=False, allow_blank=True)
        message = serializers.CharField()
        mode = serializers.ChoiceField(choices=Call.Mode.values, required=False)
        sessionKey = serializers.CharField(required=False, allow_blank=True)
        dtmfSequence = serializers.CharField(required=False)

    class FilterSerializer(serializers.Serializer):
        state = serializers.ChoiceField(choices=[s.value for s in CallState], required=False)
        direction = serializers.ChoiceField(choices=Call.Direction.values, required=False)
        provider = serializers.CharField(required=False)
        active = serializers.BooleanField(required=False, allow_null=True, default=None)

    def get_queryset(self) -> QuerySet[Call]:
        filters = self.FilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return call_list(**filters.validated_data)

    @extend_schema(
        parameters=[
            OpenApiParameter("state", str),
            OpenApiParameter("direction", str),
            OpenApiParameter("provider", str),
            OpenApiParameter("active", bool),
        ]
    )
    def get(self, request: Request, *args: object, **kwargs: object) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(request=CallCreateInputSerializer, responses={201: CallOutputSerializer})
    def post(self, request: Request) -> Response:
        params = self.CallCreateInputSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        call = call_initiate(
            to=data.get("to") or None,
            message=data["message"],
            mode=data.get("mode"),
            session_key=data.get("sessionKey") or None,
            dtmf_sequence=data.get("dtmfSequence"),
        )
        return Response(CallOutputSerializer(call).data, status=status.HTTP_201_CREATED)


class CallDetailApi(APIView):
    @extend_schema(responses={200: CallOutputSerializer})
    def get(self, request: Request, call_id: str) -> Response:
        return Response(CallOutputSerializer(_get_call(call_id)).data)


class MessageSerializer(serializers.Serializer):
    message = serializers.CharField()


class CallContinueApi(APIView):
    @extend_schema(request=MessageSerializer, responses={200: serializers.DictField()})
    def post(self, request: Request, call_id: str) -> Response:
        params = MessageSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        result = call_continue(call_id=call_id, message=params.validated_data["message"])
        return Response(
            {
                "success": True,
                "transcript": result.transcript,
                "latencyMs": result.latency_ms,
                "listenWaitMs": result.listen_wait_ms,
            }
        )


class CallSpeakApi(APIView):
    class SpeakSerializer(MessageSerializer):
        wait = serializers.BooleanField(required=False, default=False)

    @extend_schema(request=SpeakSerializer, responses={200: serializers.DictField()})
    def post(self, request: Request, call_id: str) -> Response:
        params = self.SpeakSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        spoken = call_speak(
            call_id=call_id,
            message=params.validated_data["message"],
            wait=params.validated_data["wait"],
        )
        return Response(spoken_result(spoken))


class CallDtmfApi(APIView):
    class DtmfInputSerializer(serializers.Serializer):
        digits = serializers.CharField()

    @extend_schema(request=DtmfInputSerializer, responses={200: serializers.DictField()})
    def post(self, request: Request, call_id: str) -> Response:
        params = self.DtmfInputSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        call_send_dtmf(call_id=call_id, digits=params.validated_data["digits"])
        return Response({"success": True})


class CallEndApi(APIView):
    @extend_schema(request=None, responses={200: serializers.DictField()})
    def post(self, request: Request, call_id: str) -> Response:
        call_end(call_id=call_id)
        return Response({"success": True})


class CallTransferApi(APIView):
    """Cold transfer: the carrier says `message`, then dials `to`; our leg ends `transferred`."""

    class TransferInputSerializer(serializers.Serializer):
        to = serializers.CharField()
        message = serializers.CharField(required=False, allow_blank=True)

    @extend_schema(request=TransferInputSerializer, responses={200: serializers.DictField()})
    def post(self, request: Request, call_id: str) -> Response:
        params = self.TransferInputSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        call_transfer(
            call_id=call_id,
            to=params.validated_data["to"],
            message=params.validated_data.get("message") or None,
        )
        return Response({"success": True})


class TranscriptEntrySerializer(serializers.ModelSerializer):
    class Meta:
        model = TranscriptEntry
        fields = ["speaker", "text", "is_final", "interrupted", "created_at"]


class CallEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = CallEvent
        fields = ["type", "payload", "dedupe_key", "created_at"]


class CallTranscriptApi(ListAPIView):
    serializer_class = TranscriptEntrySerializer

    def get_queryset(self) -> QuerySet[TranscriptEntry]:
        return _get_call(self.kwargs["call_id"]).transcript.all()


class CallEventsApi(ListAPIView):
    serializer_class = CallEventSerializer

    def get_queryset(self) -> QuerySet[CallEvent]:
        return _get_call(self.kwargs["call_id"]).events.all()


class CallTurnsApi(APIView):
    """The call's turns, each with its stamps and stage durations (docs/voice-path.md)."""

    @extend_schema(responses={200: serializers.ListField(child=serializers.DictField())})
    def get(self, request: Request, call_id: str) -> Response:
        call = _get_call(call_id)
        return Response([turn_as_dict(turn) for turn in call.turns.all()])


class LatencyApi(APIView):
    """p50/p90/p99/count per turn stage over the selected turns."""

    @extend_schema(
        parameters=[
            OpenApiParameter("since", str, description="90s, 30m, 24h or 7d"),
            OpenApiParameter("provider", str),
            OpenApiParameter("direction", str, enum=["inbound", "outbound"]),
            OpenApiParameter("callId", str),
        ],
        responses={200: serializers.DictField()},
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        since = params.get("since")
        query = LatencyFilter(
            since=since_parse(since) if since else None,
            provider=params.get("provider") or None,
            direction=params.get("direction") or None,
            call_id=params.get("callId") or None,
        )
        return Response(latency_summary(query))
