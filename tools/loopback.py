"""Run local Ray and Dask clusters where nothing but the loopback interface exists.

Ray advertises and binds its servers on the node's address, found by routing a socket towards the
internet; a local test or benchmark must only ever use 127.0.0.1. `loopback_only()` moves the calling
thread (and so every process and thread it starts afterwards) into a new network namespace whose only
interface is ``lo``, brought up: Ray then resolves its node address to 127.0.0.1 and nothing outside the
machine can be reached. It needs CAP_SYS_ADMIN (root, as in CI); where that fails it returns None and
changes nothing, and the caller falls back on its own settings (tests and bench/scaleout.py also make
Ray and Dask use 127.0.0.1 explicitly, and the tests check that no process of the cluster listens on
another address). Linux only.

`confine()` is what the tests call: `loopback_only()`, which must succeed where it can (as root, and
wherever ``CI`` is set): there a failure raises instead of running the clusters unconfined. Elsewhere
(a developer's account without CAP_SYS_ADMIN) the clusters run on their 127.0.0.1 settings alone.

    restore = confine()
    try:
        ...                      # ray.init(...), LocalCluster(host="127.0.0.1", ...)
    finally:
        if restore: restore()    # back to the original namespace (threads started meanwhile stay)
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct
import sys

_CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1


def loopback_only():
    """Enters a new network namespace with only ``lo`` (up); returns a function that goes back, or None
    when this process may not create one (not Linux, no CAP_SYS_ADMIN)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    except OSError:
        return None
    if libc.unshare(_CLONE_NEWNET) != 0:
        os.close(original)
        return None
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            request = struct.pack("16sh", b"lo", 0)
            flags = struct.unpack("16sh", fcntl.ioctl(probe, _SIOCGIFFLAGS, request))[1]
            fcntl.ioctl(probe, _SIOCSIFFLAGS, struct.pack("16sh", b"lo", flags | _IFF_UP))
    except OSError:
        libc.setns(original, _CLONE_NEWNET)
        os.close(original)
        return None

    def restore():
        if libc.setns(original, _CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns back to the original network namespace failed")
        os.close(original)

    return restore


def confinement_required() -> bool:
    """Whether the clusters must run in the namespace: as root (which may create one) and in CI."""
    return bool(os.environ.get("CI")) or (hasattr(os, "geteuid") and os.geteuid() == 0)


def confine():
    """`loopback_only()`; RuntimeError where it fails although `confinement_required()`."""
    restore = loopback_only()
    if restore is None and confinement_required():
        raise RuntimeError("cannot create a loopback-only network namespace (unshare(CLONE_NEWNET) needs "
                           "CAP_SYS_ADMIN): the local Ray and Dask clusters would listen beyond 127.0.0.1; "
                           "run as root, or outside CI as a user without CAP_SYS_ADMIN")
    return restore


def outside_route() -> str | None:
    """None when no address outside the machine has a route from here (as in the loopback-only
    namespace), else what trying one gave.

    The probe, 192.0.2.1 (TEST-NET-1, RFC 5737), is never assigned, so it reaches no one even where a
    route exists; without one, connect() fails at once with ENETUNREACH. It uses nothing but socket, so
    that tests can send it to Ray's and Dask's workers (by value) and run it there."""
    import errno
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(2)
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError as error:
            return None if error.errno == errno.ENETUNREACH else f"{type(error).__name__}: {error}"
    return "connected to 192.0.2.1"


def is_loopback(address: str) -> bool:
    """Whether a listening address (as psutil reports it: '127.0.0.1', '::1', '::ffff:127.0.0.1') is loopback."""
    return address.startswith("127.") or address in ("::1", "localhost") or address.startswith("::ffff:127.")


def non_loopback_listeners(pids) -> list:
    """``(pid, address, port)`` of every listening TCP socket of ``pids`` that is not on loopback."""
    import psutil

    found = []
    for pid in pids:
        try:
            connections = psutil.Process(pid).net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        for connection in connections:
            if connection.status == psutil.CONN_LISTEN and not is_loopback(connection.laddr.ip):
                found.append((pid, connection.laddr.ip, connection.laddr.port))
    return found
