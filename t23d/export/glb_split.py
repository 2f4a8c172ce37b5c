"""Turn a binary glTF (``.glb``) into the separate-file form (``.gltf`` JSON + ``.bin``), losslessly.

The JSON chunk becomes the ``.gltf`` file with its one buffer pointing at the ``.bin`` file; images
stay in buffer views (valid glTF 2.0), so nothing is re-encoded. Pure standard library.
"""

from __future__ import annotations

import json
import struct

from t23d.common.errors import T23dError

_MAGIC = 0x46546C67  # b"glTF"
_JSON = 0x4E4F534A
_BIN = 0x004E4942


def split_glb(data: bytes, name: str) -> dict[str, bytes]:
    """``{"<name>.gltf": ..., "<name>.bin": ...}`` from the bytes of a .glb file (``name`` without extension)."""
    if len(data) < 20:
        raise T23dError("not a .glb file: shorter than its 12-byte header and first chunk header")
    magic, version, length = struct.unpack_from("<III", data, 0)
    if magic != _MAGIC or version != 2:
        raise T23dError(f"not a glTF 2.0 .glb file (magic {magic:#x}, version {version})")
    if length > len(data):
        raise T23dError(f"truncated .glb file: header says {length} bytes, got {len(data)}")
    offset, doc, binary = 12, None, b""
    while offset + 8 <= length:
        chunk_len, chunk_type = struct.unpack_from("<II", data, offset)
        chunk = data[offset + 8 : offset + 8 + chunk_len]
        if chunk_type == _JSON and doc is None:
            doc = json.loads(chunk.decode("utf-8"))
        elif chunk_type == _BIN and not binary:
            binary = bytes(chunk)
        offset += 8 + chunk_len
    if doc is None:
        raise T23dError("not a valid .glb file: no JSON chunk")
    files = {}
    buffers = doc.get("buffers", [])
    if buffers:
        size = int(buffers[0].get("byteLength", len(binary)))
        if size > len(binary):
            raise T23dError(
                f"not a valid .glb file: buffer 0 needs {size} bytes, the BIN chunk has {len(binary)}"
            )
        buffers[0]["uri"] = f"{name}.bin"
        files[f"{name}.bin"] = binary[:size]  # the chunk's padding is not part of the buffer
    files[f"{name}.gltf"] = json.dumps(doc, indent=1).encode("utf-8")
    return files
