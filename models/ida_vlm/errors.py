"""The model package's own error: a request, image or checkpoint it cannot take, in one line."""
from __future__ import annotations

from ..errors import InputError


class IdaVlmError(InputError):
    """A bad request or checkpoint, described in one line that names the file where there is one."""
