"""Where a block-wise run's tasks run: local threads, or a dask.distributed cluster
(:class:`Workers`; :func:`check_client` refuses a client that cannot run them;
:func:`local_client` opens a cluster on this machine).
"""

from __future__ import annotations

import contextlib
import re
import socket
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..errors import InvalidInputError
from ..threads import serial_call, thread_count

#: Seconds to wait for a dask scheduler to answer.
CONNECT_TIMEOUT = 5.0


def check_client(client: Any) -> None:
    """Refuse, before any work, a ``client`` that is none of what :meth:`Workers.open`
    takes, or a scheduler address where nothing answers."""
    if client is None or client == "local" or (hasattr(client, "submit") and hasattr(client, "scatter")):
        return
    if not isinstance(client, str):
        raise InvalidInputError(
            f"client must be None (local threads), 'local', a scheduler address or a dask.distributed.Client, "
            f"not {type(client).__name__}"
        )
    match = re.fullmatch(r"(?:tcp://)?(\[[^\]]+\]|[^:/]+):(\d+)/?", client.strip())
    if match is None:
        raise InvalidInputError(
            f"client={client!r}: not a scheduler address; give one as tcp://HOST:PORT (e.g. tcp://10.0.0.5:8786), "
            "or 'local' for a LocalCluster on this machine"
        )
    host, port = match[1].strip("[]"), int(match[2])
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT) as connection:
            greeting = _first_bytes(connection)
    except OSError as error:
        raise InvalidInputError(
            f"client={client!r}: no dask scheduler answers there ({error.strerror or error}); start one "
            "(dask scheduler) or check the address"
        ) from None
    if not is_dask_greeting(greeting):
        said = (f"it said {greeting[:24]!r}" if greeting
                else f"it said nothing within {CONNECT_TIMEOUT:g} s")
        raise InvalidInputError(
            f"client={client!r}: a server answers there, but not a dask scheduler ({said}); give the address "
            "`dask scheduler` prints (tcp://HOST:8786), or 'local'")


def _first_bytes(connection: socket.socket) -> bytes:
    """What a server sends unasked within :data:`CONNECT_TIMEOUT` (b"" for nothing): a dask
    scheduler greets every connection with its handshake at once, where a web server waits
    for a request (and dask's own client would then wait for minutes)."""
    connection.settimeout(CONNECT_TIMEOUT)
    try:
        return connection.recv(4096)
    except TimeoutError:
        return b""


def is_dask_greeting(data: bytes) -> bool:
    """Whether ``data`` opens as dask's TCP messages do: the message's length, its number
    of frames and each frame's length as little-endian 64-bit integers, the length within
    a handshake's size."""
    if len(data) < 24:
        return False
    total, frames = int.from_bytes(data[:8], "little"), int.from_bytes(data[8:16], "little")
    return 16 <= total <= 1 << 20 and 1 <= frames <= 64 and total >= 8 * (frames + 1)


@contextlib.contextmanager
def local_client(*, process_per_core: bool = False) -> Iterator[Any]:
    """A ``dask.distributed`` client of a new ``LocalCluster`` on this machine, closed
    afterwards: dask's own split of the cores into processes and threads, or one process
    per core of one thread each (``process_per_core``: tasks of Python and kernels, such
    as a scene each, which threads of one process would serialise). Open it once for a
    run of many calls: each cluster takes seconds to start."""
    from dask.distributed import Client, LocalCluster

    options: dict[str, Any] = {"processes": True, "dashboard_address": None}
    if process_per_core:
        options.update(n_workers=thread_count(), threads_per_worker=1)
    with LocalCluster(**options) as cluster, Client(cluster) as client:
        yield client


class Workers:
    """Where the tasks of a block-wise run go: local threads, or a dask.distributed client.

    Open one with :meth:`open`. Tasks run their row blocks serially
    (``sarheight.threads.serial_call``): a run keeps about one task per worker thread in flight.
    """

    def __init__(self, pool: ThreadPoolExecutor | None = None, client: Any = None):
        self.pool, self.client = pool, client

    @classmethod
    @contextlib.contextmanager
    def open(cls, client: Any = None) -> Iterator[Workers]:
        """``None``: local threads, one per core; ``"local"``: a new ``LocalCluster`` on this
        machine (closed afterwards); a scheduler address (str) or a ``dask.distributed.Client``."""
        if client is None:
            # A task per thread: while one runs Python (assembling, writing), another computes.
            with ThreadPoolExecutor(max_workers=max(1, thread_count())) as pool:
                yield cls(pool=pool)
            return
        from dask.distributed import Client

        if isinstance(client, str):
            with contextlib.ExitStack() as stack:
                if client == "local":
                    client = stack.enter_context(local_client())
                else:
                    address = client
                    try:
                        client = stack.enter_context(Client(address, timeout=CONNECT_TIMEOUT))
                    except (OSError, TimeoutError, ValueError, TypeError, MemoryError) as error:
                        # A server that is not a dask scheduler answers with bytes the
                        # protocol reads as a huge frame (a MemoryError) or garbage.
                        raise InvalidInputError(
                            f"scheduler {address!r}: no dask scheduler answered there ({type(error).__name__}: "
                            f"{str(error).splitlines()[0][:160] if str(error) else 'no reply'}); give the address "
                            "`dask scheduler` prints (tcp://HOST:8786), or 'local'") from None
                yield cls(client=client)
            return
        yield cls(client=client)

    @property
    def threads(self) -> int:
        """Worker threads in all."""
        if self.pool is not None:
            return self.pool._max_workers
        try:
            return max(1, sum(self.client.nthreads().values()))
        except Exception:  # a scheduler that cannot say: assume a small cluster
            return 2

    def submit(self, func: Callable, *args: Any):
        """A future of ``func(*args)``, run with its row blocks on the worker's thread."""
        return (self.pool or self.client).submit(serial_call, func, *args)

    def broadcast(self, value: Any) -> Any:
        """A value every task takes (the geometry): sent to the workers once, not with each task."""
        if self.client is None:
            return value
        # hash=False: a key of its own per run (a content hash would be shared by two runs on
        # one client, and the first run's release would drop the second's data).
        return self.client.scatter(value, broadcast=True, hash=False)

    def upload(self, value: Any) -> Any:
        """A task's large argument (a tile's radar-grid sums): moved to a worker ahead of the
        task rather than inside its description, as dask asks of arguments of many MB."""
        if self.client is None:
            return value
        return self.client.scatter(value, hash=False)
