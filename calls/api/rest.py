"""REST resources under /api/calls/: list/create, detail, in-call actions, transcript, events."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import Direction, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from calls.api.contract import (
    DTMF_NEEDS_CONVERSATION,
    SESSION_KEY_MAX,
    DtmfField,
    e164_field,
    error_responses,
    pattern_field,
    text_field,
)
from calls.api.methods import spoken_result
from calls.exceptions import CallNotFound
from calls.models import Call, CallEvent, TranscriptEntry
from calls.selectors import call_as_dict, call_find, call_list
from calls.services.actions import call_end, call_send_dtmf, call_speak
from calls.services.dialling import call_initiate
from calls.services.transfer import call_transfer
from calls.services.turn_records import (
    SINCE_ERROR,
    LatencyFilter,
    latency_summary,
    since_parse,
    turn_as_dict,
)
from calls.services.turns import call_continue
from calls.state import CallState
from providers.registry import provider_names

# What the in-call actions may answer besides 200, 400, 401 and 404 (calls/api/openapi.py
# adds those): a call that cannot do it now, disabled or no way to speak, the carrier failing.
ACTION_ERRORS = error_responses(409, 502, 503)


class SuccessSerializer(serializers.Serializer):
    success = serializers.BooleanField()


class SpokenSerializer(SuccessSerializer):
    """calls.api.methods.spoken_result: heard/interrupted only when a wait learned them."""

    utteranceId = serializers.CharField()
    heard = serializers.BooleanField(required=False)
    interrupted = serializers.BooleanField(required=False)


class ContinueResultSerializer(SuccessSerializer):
    transcript = serializers.CharField(allow_blank=True)
    latencyMs = serializers.IntegerField()
    listenWaitMs = serializers.IntegerField()


class CallOutputSerializer(serializers.Serializer):
    """The status view of a call; built by selectors.call_as_dict."""

    def get_fields(self) -> dict[str, serializers.Field]:
        # What call_as_dict gives, for the schema; a method because `from` is a keyword.
        return {
            "callId": serializers.CharField(),
            "provider": serializers.CharField(allow_blank=True),
            "direction": serializers.ChoiceField(choices=Call.Direction.values),
            "state": serializers.ChoiceField(choices=[s.value for s in CallState]),
            "mode": serializers.CharField(),
            "from": serializers.CharField(allow_blank=True),
            "to": serializers.CharField(allow_blank=True),
            "startedAt": serializers.DateTimeField(allow_null=True),
            "providerCallId": serializers.CharField(required=False),
            "answeredAt": serializers.DateTimeField(required=False),
            "endedAt": serializers.DateTimeField(required=False),
            "endReason": serializers.CharField(required=False),
            "sessionKey": serializers.CharField(required=False),
            "answeredBy": serializers.CharField(required=False),
            "machineDetectionMs": serializers.IntegerField(required=False),
            "metadata": serializers.JSONField(),
        }

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
        to = e164_field(
            required=False, allow_blank=True, help_text="E.164; default: the configured toNumber"
        )
        message = text_field()
        mode = serializers.ChoiceField(choices=Call.Mode.values, required=False)
        sessionKey = text_field(required=False, allow_blank=True, max_length=SESSION_KEY_MAX)
        dtmfSequence = DtmfField(
            required=False, help_text="Sent right after connect; needs mode conversation"
        )

    class FilterSerializer(serializers.Serializer):
        state = serializers.ChoiceField(choices=[s.value for s in CallState], required=False)
        direction = serializers.ChoiceField(choices=Call.Direction.values, required=False)
        provider = serializers.ChoiceField(choices=provider_names(), required=False)
        active = serializers.BooleanField(required=False)

    def get_queryset(self) -> QuerySet[Call]:
        # A plain dict: from a QueryDict DRF reads a missing boolean as False.
        filters = self.FilterSerializer(data=self.request.query_params.dict())
        filters.is_valid(raise_exception=True)
        return call_list(**filters.validated_data)

    @extend_schema(parameters=[FilterSerializer])
    def get(self, request: Request, *args: object, **kwargs: object) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        request=CallCreateInputSerializer,
        responses={201: CallOutputSerializer, **error_responses(429, 502, 503)},
    )
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


class CallCreateSchema(OpenApiSerializerExtension):
    """The create body's schema says what its fields cannot: digits need a conversation."""

    target_class = CallListCreateApi.CallCreateInputSerializer

    def map_serializer(self, auto_schema: AutoSchema, direction: Direction) -> dict[str, Any]:
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        return {**schema, **DTMF_NEEDS_CONVERSATION}


class CallDetailApi(APIView):
    @extend_schema(responses={200: CallOutputSerializer})
    def get(self, request: Request, call_id: str) -> Response:
        return Response(CallOutputSerializer(_get_call(call_id)).data)


class MessageSerializer(serializers.Serializer):
    message = text_field()


class CallContinueApi(APIView):
    @extend_schema(
        request=MessageSerializer,
        responses={200: ContinueResultSerializer, **ACTION_ERRORS, **error_responses(504)},
    )
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

    @extend_schema(
        request=SpeakSerializer,
        responses={200: SpokenSerializer, **ACTION_ERRORS, **error_responses(504)},
    )
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
        digits = DtmfField()

    @extend_schema(request=DtmfInputSerializer, responses={200: SuccessSerializer, **ACTION_ERRORS})
    def post(self, request: Request, call_id: str) -> Response:
        params = self.DtmfInputSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        call_send_dtmf(call_id=call_id, digits=params.validated_data["digits"])
        return Response({"success": True})


class CallEndApi(APIView):
    @extend_schema(request=None, responses={200: SuccessSerializer, **ACTION_ERRORS})
    def post(self, request: Request, call_id: str) -> Response:
        call_end(call_id=call_id)
        return Response({"success": True})


class CallTransferApi(APIView):
    """Cold transfer: the carrier says `message`, then dials `to`; our leg ends `transferred`."""

    class TransferInputSerializer(serializers.Serializer):
        to = e164_field()
        message = text_field(required=False, allow_blank=True)

    @extend_schema(
        request=TransferInputSerializer, responses={200: SuccessSerializer, **ACTION_ERRORS}
    )
    def post(self, request: Request, call_id: str) -> Response:
        params = self.TransferInputSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        call_transfer(
            call_id=call_id,
            to=params.validated_data["to"],
            message=params.validated_data.get("message") or None,
        )
        return Response({"success": True})


# camelCase, as RPC, the CLI and event payloads spell keys (the plugin's style).
class TranscriptEntrySerializer(serializers.ModelSerializer):
    isFinal = serializers.BooleanField(source="is_final")
    createdAt = serializers.DateTimeField(source="created_at")

    class Meta:
        model = TranscriptEntry
        fields = ["speaker", "text", "isFinal", "interrupted", "createdAt"]


class CallEventSerializer(serializers.ModelSerializer):
    dedupeKey = serializers.CharField(source="dedupe_key")
    createdAt = serializers.DateTimeField(source="created_at")

    class Meta:
        model = CallEvent
        fields = ["type", "payload", "dedupeKey", "createdAt"]


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

    @extend_schema(responses={200: {"type": "array", "items": {"type": "object"}}})
    def get(self, request: Request, call_id: str) -> Response:
        call = _get_call(call_id)
        return Response([turn_as_dict(turn) for turn in call.turns.all()])


class LatencyApi(APIView):
    """p50/p90/p99/count per turn stage over the selected turns."""

    class FilterSerializer(serializers.Serializer):
        since = pattern_field(r"^[0-9]{1,6}[smhdSMHD]$", SINCE_ERROR, required=False)
        provider = serializers.ChoiceField(choices=provider_names(), required=False)
        direction = serializers.ChoiceField(choices=Call.Direction.values, required=False)
        callId = serializers.UUIDField(required=False)

    @extend_schema(parameters=[FilterSerializer], responses={200: {"type": "object"}})
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        params = filters.validated_data
        query = LatencyFilter(
            since=since_parse(params["since"]) if "since" in params else None,
            provider=params.get("provider"),
            direction=params.get("direction"),
            call_id=str(params["callId"]) if "callId" in params else None,
        )
        return Response(latency_summary(query))
