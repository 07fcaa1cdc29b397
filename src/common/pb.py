"""The protobuf wire format for the few flat messages in src/proto.

Hand-rolled on purpose: no protoc step, and it works with whatever protobuf
runtime (or none) the base image has. Supports varint and string fields.
"""


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode(fields: dict) -> bytes:
    """fields: {field_number: int | str}; zero values are omitted, as proto3 does."""
    out = bytearray()
    for num in sorted(fields):
        v = fields[num]
        if isinstance(v, int):
            if v:
                out += _varint(num << 3 | 0) + _varint(v)
        else:
            data = v.encode()
            if data:
                out += _varint(num << 3 | 2) + _varint(len(data)) + data
    return bytes(out)


def decode(data: bytes) -> dict:
    """Returns {field_number: int | str}; unknown wire types raise ValueError."""
    out, i = {}, 0

    def read_varint():
        nonlocal i
        shift = result = 0
        while True:
            if i >= len(data):
                raise ValueError("truncated varint")
            b = data[i]
            i += 1
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return result

    while i < len(data):
        key = read_varint()
        num, wire = key >> 3, key & 7
        if wire == 0:
            out[num] = read_varint()
        elif wire == 2:
            n = read_varint()
            out[num] = data[i:i + n].decode()
            i += n
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return out
