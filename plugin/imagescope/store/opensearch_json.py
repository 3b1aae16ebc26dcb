"""Request bodies for OpenSearch written with orjson.

:class:`OrjsonSerializer` is opensearch-py's ``JSONSerializer`` with a faster
``dumps``: orjson writes numpy arrays directly (a float32 vector as the
shortest text that reads back to the same float32, about 60% of the bytes of
``tolist()`` through the standard library, which also leaves the node less to
parse) and everything else as the standard library would. Values orjson does
not write itself go through the parent's ``default`` (``datetime`` and ``date``
as ``isoformat()``, ``Decimal`` as a float, an array that is not C-contiguous as
a list, pandas types), and anything orjson refuses (an integer beyond 64 bits,
a byte-swapped array) is written by the parent's standard-library ``dumps``.
The one difference: a NaN or infinite float becomes ``null`` instead of the
non-standard ``NaN``/``Infinity`` tokens (ImageScope checks vectors and
metadata for finite values before writing). Responses are read by the
parent's standard-library ``loads``, which keeps integers beyond 64 bits exact.
"""

from __future__ import annotations

from typing import Any

import orjson
from opensearchpy.serializer import JSONSerializer

#: numpy arrays and scalars natively; datetimes and dataclasses through ``default``
#: (as the standard library does); non-string keys as strings (as ``json.dumps``).
DUMPS_OPTIONS = (
    orjson.OPT_SERIALIZE_NUMPY
    | orjson.OPT_NON_STR_KEYS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
)


class OrjsonSerializer(JSONSerializer):
    """``JSONSerializer`` whose ``dumps`` runs on orjson (see the module docs)."""

    def dumps(self, data: Any) -> Any:
        if isinstance(data, str):
            return data  # already a body (a prebuilt bulk request)
        try:
            return orjson.dumps(data, default=self.default, option=DUMPS_OPTIONS).decode()
        except TypeError:  # orjson.JSONEncodeError is one; the parent writes it or explains
            return super().dumps(data)
