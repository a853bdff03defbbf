"""Download an http(s) source file to a local folder, so readers only ever see local paths."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

import httpx

from aisle.errors import InputError

__all__ = ["fetch_url", "file_name", "is_url"]

_SCHEMES = ("http", "https")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_CHUNK = 1 << 20


def is_url(text: str) -> bool:
    """True when ``text`` is an http(s) URL with a host."""
    parts = urlsplit(text.strip())
    return parts.scheme.lower() in _SCHEMES and bool(parts.netloc)


def fetch_url(
    url: str,
    dest_dir: Path,
    *,
    transport: httpx.BaseTransport | None = None,
    timeout: float = 60.0,
) -> Path:
    """Stream ``url`` into ``dest_dir`` and return the file's path.

    The file is named after the URL's last path segment (``.csv.gz`` and the like kept) and
    appears only once complete: it is written under a temporary name, then renamed. HTTP
    errors and connection failures raise InputError.

    Parameters
    ----------
    transport
        The httpx transport to use; tests pass an ``httpx.MockTransport``.
    timeout
        Seconds allowed for connecting and for each read.
    """
    source = redacted(url)
    if not is_url(url):
        raise InputError(
            "not an http(s) URL", source=source, hint="give an http:// or https:// URL"
        )
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / file_name(url)
    handle, temp_name = tempfile.mkstemp(dir=dest_dir, prefix=f".{target.name}.", suffix=".part")
    try:
        with (
            os.fdopen(handle, "wb") as out,
            httpx.Client(transport=transport, timeout=timeout, follow_redirects=True) as client,
            client.stream("GET", url) as response,
        ):
            if response.is_error:
                raise InputError(
                    f"the server answered HTTP {response.status_code} {response.reason_phrase}",
                    source=source,
                    hint=_status_hint(response.status_code),
                )
            for chunk in response.iter_bytes(_CHUNK):
                out.write(chunk)
        os.replace(temp_name, target)
    except httpx.TimeoutException:
        raise InputError(
            f"the download timed out (limit {timeout:g} s)",
            source=source,
            hint="retry, or raise the timeout",
        ) from None
    except httpx.HTTPError as exc:
        raise InputError(
            f"the download failed ({type(exc).__name__}: {str(exc).replace(url, source)})",
            source=source,
            hint="check the URL and the network connection",
        ) from None
    finally:
        Path(temp_name).unlink(missing_ok=True)
    return target


def file_name(url: str) -> str:
    """A safe local file name from the URL's last path segment, suffixes kept."""
    name = PurePosixPath(unquote(urlsplit(url).path)).name
    name = _UNSAFE_NAME.sub("_", name).strip("._")
    return name or "download"


def redacted(url: str) -> str:
    """The URL without credentials or query string, which may carry secrets."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}" if parts.scheme else url.split("?", 1)[0]


def _status_hint(status: int) -> str:
    if status in (401, 403):
        return "the URL needs credentials or has expired"
    if status == 404:
        return "check the URL; the file is not there"
    if status >= 500:
        return "the server failed; retry later"
    return "check the URL"
