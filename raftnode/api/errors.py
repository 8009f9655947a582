"""etcd's gateway error body and the gRPC code -> HTTP status mapping (grpc-gateway v1)."""

from __future__ import annotations

import orjson
from aiohttp import web

from raftnode.mvcc.errors import EtcdError, GrpcCode

HTTP_STATUS: dict[int, int] = {
    GrpcCode.OK: 200,
    GrpcCode.CANCELED: 408,
    GrpcCode.UNKNOWN: 500,
    GrpcCode.INVALID_ARGUMENT: 400,
    GrpcCode.DEADLINE_EXCEEDED: 504,
    GrpcCode.NOT_FOUND: 404,
    GrpcCode.ALREADY_EXISTS: 409,
    GrpcCode.PERMISSION_DENIED: 403,
    GrpcCode.RESOURCE_EXHAUSTED: 429,
    GrpcCode.FAILED_PRECONDITION: 400,
    GrpcCode.ABORTED: 409,
    GrpcCode.OUT_OF_RANGE: 400,
    GrpcCode.UNIMPLEMENTED: 501,
    GrpcCode.INTERNAL: 500,
    GrpcCode.UNAVAILABLE: 503,
    GrpcCode.DATA_LOSS: 500,
    GrpcCode.UNAUTHENTICATED: 401,
}


def http_status(code: int) -> int:
    return HTTP_STATUS.get(code, 500)


def error_body(message: str, code: int) -> bytes:
    """``{"error","code","message"}``: etcd 3.4/3.5's form, a superset of 3.6's."""
    return orjson.dumps({"error": message, "code": int(code), "message": message})


def error_response(message: str, code: int) -> web.Response:
    return web.Response(body=error_body(message, code), status=http_status(code),
                        content_type="application/json")


def from_exception(e: EtcdError) -> web.Response:
    return error_response(e.message, e.code)


def stream_error_chunk(message: str, code: int) -> bytes:
    """A stream error as grpc-gateway v1 writes it mid-stream."""
    status = http_status(code)
    return orjson.dumps({"error": {"grpc_code": int(code), "http_code": status,
                                   "message": message, "http_status": _REASONS.get(status, "")}})


_REASONS = {400: "Bad Request", 404: "Not Found", 408: "Request Timeout", 500: "Internal Server Error",
            503: "Service Unavailable", 504: "Gateway Timeout", 429: "Too Many Requests"}
