"""Network namespaces as file descriptors, and a worker thread that lives inside one.

`setns(2)` changes the namespace of the calling *thread* only, so work that depends on the
current netns (creating sockets, writing `/proc/sys/net/...`) runs on a `NetnsWorker`: a
thread that enters the target netns once and then executes submitted callables. Sockets keep
the netns they were created in, so the caller may use them afterwards from any thread. The
worker thread is never returned to the host: it simply exits, which drops its reference.

`open_in(fd, factory)` is the hot path's shortcut for a socket only: one long-lived thread
enters the netns, runs the factory, and goes back to the host netns (~25 µs against ~140 µs
to start a worker). The daemon's request threads never change netns themselves; the one that
does runs nothing else, and if it could not go back it ends (the next call starts another).
`open_in_background` returns at once with a `Pending`: the attach asks for the pod's socket
first and collects it just before the move, so the hop (~0.3 ms when the node was idle and the
thread has to be woken) overlaps the host-side lookup instead of adding to it.

The host netns is the daemon's own (`/proc/self/ns/net`, i.e. the thread-group leader's):
`/proc/1/ns/net` is not readable on every host. No subprocess, no fork.

Cost: opening a netns fd ~10 µs; starting a worker and entering the netns ~100-200 µs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

from knd.netns.errors import NetnsOpenError

CLONE_NEWNET = 0x40000000
HOST_NETNS_PATH = "/proc/self/ns/net"
#: A netns reached through an fd this process holds (valid only while the fd is open).
HELD_NETNS_PREFIX = "/proc/self/fd/"


def held_netns_path(fd: int) -> str:
    """A path that opens the netns behind `fd` (as long as this process keeps `fd` open)."""
    return f"{HELD_NETNS_PREFIX}{fd}"


def is_held_netns_path(path: str) -> bool:
    """True for a `held_netns_path`: never keep it beyond the call that holds its fd."""
    return path.startswith(HELD_NETNS_PREFIX)


T = TypeVar("T")

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def open_netns(path: str) -> int:
    """Open a netns by path (`/var/run/netns/x`, `/proc/<pid>/ns/net`) → O_RDONLY|O_CLOEXEC fd.

    Raises NetnsOpenError (cause: the OSError) if it cannot be opened or is not a netns.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise NetnsOpenError(f"cannot open netns {path!r}: {exc.strerror}") from exc
    return fd


def open_host_netns() -> int:
    """An fd for the daemon's own (host) netns."""
    return open_netns(HOST_NETNS_PATH)


NS_GET_NSTYPE = 0xB703  # _IO(0xb7, 0x3), linux/nsfs.h (Linux 4.11)


def check_netns_fd(fd: int, path: str) -> None:
    """Raise NetnsOpenError unless `fd` is a network namespace (one ioctl, no thread)."""
    try:
        kind = fcntl.ioctl(fd, NS_GET_NSTYPE)
    except OSError as exc:
        raise NetnsOpenError(f"{path!r} is not a namespace: {exc.strerror}") from exc
    if kind != CLONE_NEWNET:
        raise NetnsOpenError(f"{path!r} is not a network namespace")


def netns_inode(fd: int) -> int:
    """The inode number identifying the netns behind `fd` (equal inodes = same netns)."""
    return os.fstat(fd).st_ino


def setns(fd: int) -> None:
    """Move the *calling thread* into the netns behind `fd`."""
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NetnsOpenError(f"setns failed: {os.strerror(err)}") from OSError(
            err, os.strerror(err)
        )


_STOP = object()
#: The longest a caller waits for the hop thread (a socket takes ~25 µs; the NRI hook has 2 s).
HOP_TIMEOUT_S = 2.0


class Pending(Generic[T]):
    """The outcome of one hop request (`open_in_background`), awaited with `result()`."""

    __slots__ = ("_outcome", "_reply")

    def __init__(self) -> None:
        self._reply: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()
        self._outcome: tuple[bool, Any] | None = None

    def deliver(self, ok: bool, value: Any) -> None:
        """The hop thread's answer (once)."""
        self._reply.put((ok, value))

    def result(self) -> T:
        """Wait for the answer (~25 µs after the request, unless the hop thread is busy; at
        most HOP_TIMEOUT_S): the factory's result, or its exception (NetnsOpenError if the
        netns could not be entered or the hop thread never answered) raised again on every
        call."""
        outcome: tuple[bool, Any] | None = self._outcome
        if outcome is None:
            try:
                outcome = self._reply.get(timeout=HOP_TIMEOUT_S)
            except queue.Empty:
                late = NetnsOpenError(f"the hop thread did not answer within {HOP_TIMEOUT_S:g} s")
                outcome = (False, late)
            self._outcome = outcome
        ok, value = outcome
        if not ok:
            raise value
        return cast(T, value)


class _Hopper:
    """The one thread that opens sockets in other network namespaces (see `open_in`).

    Requests queue in order. A thread that cannot get back to the host netns ends; under the
    lock it is marked gone and answers what is still queued for it with NetnsOpenError, so a
    request is served by a thread in the host or refused, never lost (the next request starts
    a new thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def submit(self, netns_fd: int, factory: Callable[[], T]) -> Pending[T]:
        pending: Pending[T] = Pending()
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._requests = queue.SimpleQueue()
                self._thread = threading.Thread(
                    target=self._loop,
                    args=(self._requests, open_host_netns()),
                    name="knd-hop",
                    daemon=True,
                )
                self._thread.start()
            self._requests.put((netns_fd, factory, pending))
        return pending

    def run(self, netns_fd: int, factory: Callable[[], T]) -> T:
        return self.submit(netns_fd, factory).result()

    def _stranded(self, requests: queue.SimpleQueue[Any], last: Pending[Any], answer: Any) -> None:
        """Called by a thread that cannot go home: forget it, then deliver its last answer
        (so that caller's next request starts a new thread) and refuse what it still holds."""
        with self._lock:
            if self._requests is requests:
                self._thread = None
            last.deliver(*answer)
            while True:
                try:
                    _fd, _factory, pending = requests.get_nowait()
                except queue.Empty:
                    return
                pending.deliver(
                    False, NetnsOpenError("the hop thread could not return to the host netns")
                )

    def _loop(self, requests: queue.SimpleQueue[Any], host_fd: int) -> None:
        try:
            while True:
                fd, factory, pending = requests.get()
                try:
                    setns(fd)
                except NetnsOpenError as exc:  # still in the host netns
                    pending.deliver(False, exc)
                    continue
                try:
                    ok, value = True, factory()
                except BaseException as exc:  # handed to the caller
                    ok, value = False, exc
                try:
                    setns(host_fd)
                except NetnsOpenError:
                    self._stranded(requests, pending, (ok, value))
                    return  # stranded in a foreign netns: end; the next call starts a new one
                pending.deliver(ok, value)
        finally:
            os.close(host_fd)


_HOPPER = _Hopper()


def open_in(netns_fd: int, factory: Callable[[], T]) -> T:
    """`factory()` (a socket constructor: quick, never blocking) run inside the netns behind
    `netns_fd`, on the hop thread; returns its result or raises its exception (NetnsOpenError
    if the netns cannot be entered). Calls are served in order; each takes ~25 µs."""
    return _HOPPER.run(netns_fd, factory)


def open_in_background(netns_fd: int, factory: Callable[[], T]) -> Pending[T]:
    """`open_in` without waiting: the hop thread opens the socket while the caller goes on.
    `netns_fd` must stay open until `result()` returned; a result never awaited (a socket)
    is left to the garbage collector, so callers await it on every path."""
    return _HOPPER.submit(netns_fd, factory)


class NetnsWorker:
    """A thread inside one netns that runs callables on request (context manager).

    `call(fn, *args)` blocks until `fn` ran in the worker's netns and returns its result or
    re-raises its exception. Construction raises NetnsOpenError if the netns cannot be entered.
    The worker dups the fd it is given; the caller keeps ownership of its own.
    """

    def __init__(
        self,
        netns_fd: int,
        name: str = "knd-netns",
        init: Callable[[], Any] | None = None,
        *,
        wait: bool = True,
    ) -> None:
        """`init`, when given, runs in the netns as the thread starts; its result is
        `initial` (one hand-off fewer than a first `call`). With `wait=False` the constructor
        returns at once and the thread starts while the caller does other work: entering the
        netns, or `init`, fails at the first `call` or `initial` instead of here."""
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._ready: queue.SimpleQueue[tuple[BaseException | None, Any]] = queue.SimpleQueue()
        self._started = False
        self._initial: Any = None
        fd = os.dup(netns_fd)
        self._thread = threading.Thread(target=self._run, args=(fd, init), name=name, daemon=True)
        self._thread.start()
        if wait:
            self.ready()

    def ready(self) -> None:
        """Wait until the thread is in the netns (and `init` ran); raise what failed."""
        if self._started:
            return
        error, initial = self._ready.get()
        if error is not None:
            self._ready.put((error, None))  # every later caller sees the same failure
            self._thread.join()
            raise error
        self._started, self._initial = True, initial

    @property
    def initial(self) -> Any:
        """What `init` returned (None without one)."""
        self.ready()
        return self._initial

    def _run(self, fd: int, init: Callable[[], Any] | None) -> None:
        try:
            setns(fd)
        except NetnsOpenError as exc:
            self._ready.put((exc, None))
            return
        finally:
            os.close(fd)
        try:
            initial = init() if init is not None else None
        except BaseException as exc:  # handed to the constructor
            self._ready.put((exc, None))
            return
        self._ready.put((None, initial))
        while True:
            item = self._requests.get()
            if item is _STOP:
                return
            fn, args, reply = item
            try:
                reply.put((True, fn(*args)))
            except BaseException as exc:  # handed to the caller
                reply.put((False, exc))

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` inside the netns and return its result (exceptions propagate)."""
        self.ready()
        reply: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()
        self._requests.put((fn, args, reply))
        ok, value = reply.get()
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    def close(self, wait: bool = True) -> None:
        """Stop the thread (idempotent). `wait=False` returns without joining it: the thread
        ends by itself after the requests already queued (a hot path need not wait for it)."""
        if self._thread.is_alive():
            self._requests.put(_STOP)
            if wait:
                self._thread.join()

    def __enter__(self) -> NetnsWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
