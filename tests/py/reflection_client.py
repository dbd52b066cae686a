#!/usr/bin/env python3
"""A gRPC client of cardhsmd that has none of cardhsm's .proto files.

Uses only the PyPI packages grpcio, grpcio-reflection and protobuf:

    python3 -m pip install grpcio grpcio-reflection protobuf

What it does, and reports as one JSON object on stdout (tests/tests/grpcio_reflection.rs reads it):

1. Asks the reflection service for the list of services WITHOUT a token; the daemon must
   refuse (reflection needs a signed-in caller) -> "reflection_without_token".
2. Logs in without any schema: the LoginRequest wire bytes are written by hand (field 1
   username, field 2 password, both length-delimited) and the access token is read by hand
   from field 1 of the LoginResponse -> "login".
3. With the token in the `authorization: Bearer ...` metadata of the reflection stream, feeds
   grpc_reflection's ProtoReflectionDescriptorDatabase into a DescriptorPool, lists the
   services, finds AuthService / CardService and builds their message classes dynamically
   -> "services", "methods".
4. Cross-checks the hand-made Login bytes and the hand-decoded token against the reflected
   LoginRequest / LoginResponse classes -> "login".
5. Calls cardhsm.v1.AuthService/WhoAmI and cardhsm.v1.CardService/ListTokens with the
   reflected classes and the bearer token -> "whoami", "list_tokens"; and the public health
   service (no token) with its reflected classes -> "health".

Usage: reflection_client.py --target HOST:PORT --username NAME   (password in CARDHSM_PASSWORD)
Exit status 0 when every step ran (the test judges the results), 2 on bad usage.
"""

import argparse
import json
import os
import sys

import grpc
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.json_format import MessageToDict
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

TIMEOUT = 30  # seconds per call: a safety net against a hung daemon, not a measurement


# ---- protobuf wire format by hand (only what Login needs) -----------------------------------


def encode_varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_string_field(number, text):
    data = text.encode("utf-8")
    # wire type 2: length-delimited
    return encode_varint((number << 3) | 2) + encode_varint(len(data)) + data


def decode_varint(buf, pos):
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def decode_fields(buf):
    """Top-level fields of a message: {number: [value, ...]} (bytes for length-delimited)."""
    fields = {}
    pos = 0
    while pos < len(buf):
        key, pos = decode_varint(buf, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, pos = decode_varint(buf, pos)
        elif wire_type == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire_type == 2:
            length, pos = decode_varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire_type == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire_type}")
        fields.setdefault(number, []).append(value)
    return fields


def identity(data):
    return data


# ---- metadata on every call of a channel (the reflection database takes no metadata) --------


class BearerInterceptor(
    grpc.UnaryUnaryClientInterceptor, grpc.StreamStreamClientInterceptor
):
    def __init__(self, token):
        self._metadata = (("authorization", f"Bearer {token}"),)

    def _details(self, details):
        metadata = tuple(details.metadata or ()) + self._metadata
        return details._replace(metadata=metadata)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)


def rpc_error(err):
    return {"code": err.code().name, "details": err.details()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="HOST:PORT of cardhsmd (plain gRPC)")
    parser.add_argument("--username", required=True)
    args = parser.parse_args()
    password = os.environ.get("CARDHSM_PASSWORD")
    if not password:
        parser.error("set CARDHSM_PASSWORD")

    report = {}
    channel = grpc.insecure_channel(args.target)
    grpc.channel_ready_future(channel).result(timeout=TIMEOUT)

    # 1. Reflection without a token.
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    try:
        responses = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=TIMEOUT
        )
        first = next(responses)
        report["reflection_without_token"] = {
            "code": "OK",
            "services": [s.name for s in first.list_services_response.service],
        }
    except grpc.RpcError as err:
        report["reflection_without_token"] = rpc_error(err)

    # 2. Login with hand-made wire bytes.
    login_bytes = encode_string_field(1, args.username) + encode_string_field(2, password)
    login = channel.unary_unary(
        "/cardhsm.v1.AuthService/Login",
        request_serializer=identity,
        response_deserializer=identity,
    )
    raw_response = login(login_bytes, timeout=TIMEOUT)
    fields = decode_fields(raw_response)
    access_token = fields[1][0].decode("utf-8")
    report["login"] = {
        "access_token_present": bool(access_token),
        "hand_decoded_token_type": fields.get(4, [b""])[0].decode("utf-8"),
    }

    # 3. Reflection with the token: services and message classes, built at run time.
    authed = grpc.intercept_channel(channel, BearerInterceptor(access_token))
    database = ProtoReflectionDescriptorDatabase(authed)
    report["services"] = sorted(database.get_services())
    pool = descriptor_pool.DescriptorPool(database)
    methods = {}
    for service_name in ("cardhsm.v1.AuthService", "cardhsm.v1.CardService"):
        service = pool.FindServiceByName(service_name)
        methods[service_name] = [m.name for m in service.methods]
    report["methods"] = methods

    def unary(service_name, method_name, metadata):
        method = pool.FindServiceByName(service_name).methods_by_name[method_name]
        request_class = message_factory.GetMessageClass(method.input_type)
        response_class = message_factory.GetMessageClass(method.output_type)
        call = channel.unary_unary(
            f"/{service_name}/{method_name}",
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )
        return request_class, lambda request: call(request, metadata=metadata, timeout=TIMEOUT)

    bearer = (("authorization", f"Bearer {access_token}"),)

    # 4. The hand-made bytes are what the reflected schema makes; the reflected response class
    #    reads the same token from the raw answer.
    login_request_class, _ = unary("cardhsm.v1.AuthService", "Login", ())
    login_response_class = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("cardhsm.v1.LoginResponse")
    )
    reflected_request = login_request_class(username=args.username, password=password)
    reflected_response = login_response_class.FromString(raw_response)
    report["login"].update(
        {
            "request_bytes_match_reflection": reflected_request.SerializeToString() == login_bytes,
            "reflected_token_matches": reflected_response.access_token == access_token,
            "token_type": reflected_response.token_type,
            "expires_in": reflected_response.expires_in,
            "roles": [
                login_response_class.DESCRIPTOR.fields_by_name["roles"]
                .enum_type.values_by_number[r]
                .name
                for r in reflected_response.roles
            ],
        }
    )

    # 5. Calls through dynamically built messages.
    whoami_class, whoami = unary("cardhsm.v1.AuthService", "WhoAmI", bearer)
    report["whoami"] = MessageToDict(whoami(whoami_class()), preserving_proto_field_name=True)
    tokens_class, list_tokens = unary("cardhsm.v1.CardService", "ListTokens", bearer)
    report["list_tokens"] = MessageToDict(
        list_tokens(tokens_class()), preserving_proto_field_name=True
    )
    try:
        _, no_token_list = unary("cardhsm.v1.CardService", "ListTokens", ())
        no_token_list(tokens_class())
        report["list_tokens_without_token"] = {"code": "OK"}
    except grpc.RpcError as err:
        report["list_tokens_without_token"] = rpc_error(err)
    if "grpc.health.v1.Health" in report["services"]:
        health_class, check = unary("grpc.health.v1.Health", "Check", ())
        answer = check(health_class(service=""))
        report["health"] = MessageToDict(answer, preserving_proto_field_name=True)

    json.dump(report, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    channel.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
