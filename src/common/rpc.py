"""Client side of gRPC calls between services: channels for the generated
stubs (common.gen.*_pb2_grpc)."""

import grpc


def channel(target: str, ca_file: str = "", server_name: str = "") -> grpc.Channel:
    """A channel to `host:port`; TLS when a CA file is given, verifying the
    certificate against that CA and the host name."""
    if ca_file:
        with open(ca_file, "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
        return grpc.secure_channel(target, creds, options=options)
    return grpc.insecure_channel(target)
