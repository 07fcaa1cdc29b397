"""Client side of gRPC calls between services."""

import grpc

from common import pb


def channel(target: str, ca_file: str = "", server_name: str = ""):
    """A channel to `host:port`; TLS when a CA file is given, verifying the
    certificate against that CA and the host name."""
    if ca_file:
        with open(ca_file, "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
        return grpc.secure_channel(target, creds, options=options)
    return grpc.insecure_channel(target)


def unary(chan, method: str, fields: dict, timeout: float = 3.0) -> dict:
    call = chan.unary_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
    return pb.decode(call(pb.encode(fields), timeout=timeout))
