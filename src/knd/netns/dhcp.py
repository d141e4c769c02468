"""DHCPv4 at prepare time (`interface.dhcp: true`), on the host interface, without configuring it;
and the renewal of that lease later, from the pod's netns.

DISCOVER → OFFER → REQUEST → ACK over a UDP socket bound to port 68 and to the device
(SO_BINDTODEVICE), broadcast flag set so the server answers by broadcast (the interface has no
address of its own for this exchange). The lease gives the address and prefix (option 1),
router (option 3), classless static routes (option 121, RFC 3442), lease time and server id.
Nothing is configured on the host. Default timeout 5 s for the whole exchange (DraNet's).

`release_lease` sends a DHCPRELEASE (RFC 2131 4.4.6: unicast to the granting server, `ciaddr` the
leased address, no answer) from where the interface holds the address — the pod netns, at
StopPodSandbox — and again from the host interface at unprepare (broadcast when the server is
not routable from there), so pod churn does not drain the server's pool until leases expire.

`renew_lease` is RFC 2131's RENEWING (REQUEST with `ciaddr`, unicast to the server that granted
the lease) or REBINDING (the same, broadcast); it must run inside the pod netns (a NetnsWorker),
where the interface holds the address. An ACK returns the refreshed lease; a NAK raises
`DhcpNakError`; no answer raises `DhcpError`.

Message encoding and decoding are pure functions (`encode_request`, `decode_reply`) so they can
be tested without a network; `obtain_lease` does the I/O (runs in the daemon's host netns).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import select
import socket
import struct
import time

from knd.netns.errors import DhcpError, DhcpNakError
from knd.netns.hoststate import DhcpLease
from knd.netns.rawlink import mac_bytes
from knd.netns.sysctl import check_ifname

MAGIC = b"\x63\x82\x53\x63"
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE = 1, 2, 3, 4, 5, 6, 7
OPT_SUBNET, OPT_ROUTER, OPT_REQUESTED_IP, OPT_LEASE_TIME = 1, 3, 50, 51
OPT_MSG_TYPE, OPT_SERVER_ID, OPT_PARAMS, OPT_CLIENT_ID, OPT_CLASSLESS = 53, 54, 55, 61, 121
OPT_END, OPT_PAD = 255, 0
CLIENT_PORT, SERVER_PORT = 68, 67
SO_BINDTODEVICE = 25
DEFAULT_TIMEOUT = 5.0


def _opt(code: int, payload: bytes) -> bytes:
    return bytes([code, len(payload)]) + payload


def encode_request(
    msg_type: int,
    xid: int,
    mac: str,
    *,
    requested_ip: str | None = None,
    server_id: str | None = None,
    ciaddr: str | None = None,
) -> bytes:
    """A BOOTREQUEST (DISCOVER, REQUEST or RELEASE). Without `ciaddr` the broadcast flag is set
    (the client has no address yet); with it (renewing/rebinding) the server answers unicast.
    A RELEASE carries no parameter request list (RFC 2131 table 5: MUST NOT)."""
    chaddr = mac_bytes(mac)
    header = struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s",
        1,  # op: BOOTREQUEST
        1,  # htype: Ethernet
        6,  # hlen
        0,  # hops
        xid,
        0,  # secs
        0 if ciaddr else 0x8000,  # flags: broadcast until the client has an address
        socket.inet_aton(ciaddr) if ciaddr else b"\0" * 4,
        b"\0" * 4,
        b"\0" * 4,
        b"\0" * 4,
        chaddr.ljust(16, b"\0"),
        b"",
        b"",
    )
    opts = _opt(OPT_MSG_TYPE, bytes([msg_type]))
    opts += _opt(OPT_CLIENT_ID, b"\x01" + chaddr)
    if requested_ip:
        opts += _opt(OPT_REQUESTED_IP, socket.inet_aton(requested_ip))
    if server_id:
        opts += _opt(OPT_SERVER_ID, socket.inet_aton(server_id))
    if msg_type != RELEASE:
        opts += _opt(OPT_PARAMS, bytes([OPT_SUBNET, OPT_ROUTER, OPT_CLASSLESS, OPT_LEASE_TIME]))
    return header + MAGIC + opts + bytes([OPT_END])


def parse_options(data: bytes) -> dict[int, bytes]:
    """Options after the magic cookie (concatenating repeated codes, RFC 3396)."""
    out: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        code = data[i]
        if code == OPT_END:
            break
        if code == OPT_PAD:
            i += 1
            continue
        if i + 1 >= len(data):
            raise DhcpError("truncated DHCP option")
        length = data[i + 1]
        value = data[i + 2 : i + 2 + length]
        if len(value) != length:
            raise DhcpError("truncated DHCP option")
        out[code] = out.get(code, b"") + value
        i += 2 + length
    return out


def decode_classless_routes(data: bytes) -> tuple[tuple[str, str], ...]:
    """Option 121: (width, significant destination octets, router) repeated."""
    routes = []
    i = 0
    while i < len(data):
        width = data[i]
        if width > 32:
            raise DhcpError("bad classless route width")
        octets = (width + 7) // 8
        if i + 1 + octets + 4 > len(data):
            raise DhcpError("truncated classless route")
        dst = data[i + 1 : i + 1 + octets].ljust(4, b"\0")
        router = data[i + 1 + octets : i + 5 + octets]
        net = ipaddress.ip_network(f"{socket.inet_ntoa(dst)}/{width}", strict=False)
        routes.append((str(net), socket.inet_ntoa(router)))
        i += 5 + octets
    return tuple(routes)


def decode_reply(data: bytes, xid: int) -> tuple[int, str, dict[int, bytes]] | None:
    """(message type, yiaddr, options) of a BOOTREPLY for `xid`, None if it is not ours."""
    if len(data) < 240 or data[0] != 2:
        return None
    (rxid,) = struct.unpack_from("!I", data, 4)
    if rxid != xid or data[236:240] != MAGIC:
        return None
    yiaddr = socket.inet_ntoa(data[16:20])
    opts = parse_options(data[240:])
    mtype = opts.get(OPT_MSG_TYPE, b"\0")[0]
    return mtype, yiaddr, opts


def lease_from(yiaddr: str, opts: dict[int, bytes]) -> DhcpLease:
    mask = opts.get(OPT_SUBNET)
    prefix = ipaddress.ip_network(f"0.0.0.0/{socket.inet_ntoa(mask)}").prefixlen if mask else 32
    router = socket.inet_ntoa(opts[OPT_ROUTER][:4]) if len(opts.get(OPT_ROUTER, b"")) >= 4 else None
    server = opts.get(OPT_SERVER_ID)
    lease_time = opts.get(OPT_LEASE_TIME)
    return DhcpLease(
        address=f"{yiaddr}/{prefix}",
        router=router,
        routes=decode_classless_routes(opts.get(OPT_CLASSLESS, b"")),
        server=socket.inet_ntoa(server) if server and len(server) == 4 else None,
        lease_time=struct.unpack("!I", lease_time)[0]
        if lease_time and len(lease_time) == 4
        else None,
        obtained_at=int(time.time()),
    )


def _socket(ifname: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, ifname.encode())
        sock.bind(("0.0.0.0", CLIENT_PORT))  # noqa: S104 - DHCP client port, bound to the device
    except OSError:
        sock.close()
        raise
    return sock


RETRANSMIT = 1.0


def _exchange(
    sock: socket.socket,
    request: bytes,
    xid: int,
    want: set[int],
    deadline: float,
    dest: tuple[str, int] = ("255.255.255.255", SERVER_PORT),
) -> tuple[int, str, dict[int, bytes]]:
    """Send `request` (again every RETRANSMIT s) until a reply of a wanted type arrives."""
    next_send = 0.0
    while True:
        now = time.monotonic()
        if now >= deadline:
            raise DhcpError("DHCP timed out")
        if now >= next_send:
            sock.sendto(request, dest)
            next_send = now + RETRANSMIT
        ready, _, _ = select.select([sock], [], [], min(deadline, next_send) - now)
        if not ready:
            continue
        reply = decode_reply(sock.recv(4096), xid)
        if reply is not None and reply[0] in want:
            return reply


def obtain_lease(ifname: str, mac: str, timeout: float = DEFAULT_TIMEOUT) -> DhcpLease:
    """Run DISCOVER/OFFER/REQUEST/ACK on `ifname` (must be up); DhcpError on timeout or NAK."""
    check_ifname(ifname)
    deadline = time.monotonic() + timeout
    xid = int.from_bytes(os.urandom(4), "big")
    try:
        sock = _socket(ifname)
    except OSError as exc:
        raise DhcpError(f"cannot open DHCP socket on {ifname}: {exc}") from exc
    try:
        discover = encode_request(DISCOVER, xid, mac)
        _mt, offered, opts = _exchange(sock, discover, xid, {OFFER}, deadline)
        server = opts.get(OPT_SERVER_ID)
        request = encode_request(
            REQUEST,
            xid,
            mac,
            requested_ip=offered,
            server_id=socket.inet_ntoa(server) if server and len(server) == 4 else None,
        )
        mtype, yiaddr, opts = _exchange(sock, request, xid, {ACK, NAK}, deadline)
        if mtype == NAK:
            raise DhcpError(f"DHCP server refused the lease on {ifname} (NAK)")
        return lease_from(yiaddr, opts)
    except OSError as exc:
        raise DhcpError(f"DHCP on {ifname} failed: {exc}") from exc
    finally:
        sock.close()


def release_lease(ifname: str, mac: str, address: str, server: str | None) -> None:
    """Give `address` (CIDR) back: one DHCPRELEASE from `ifname` in the current netns, unicast to
    `server` (broadcast when the server is unknown or unreachable). No answer is expected, so
    this takes one send (well under a millisecond); DhcpError when it cannot be sent."""
    check_ifname(ifname)
    ip = str(ipaddress.ip_interface(address).ip)
    xid = int.from_bytes(os.urandom(4), "big")
    message = encode_request(RELEASE, xid, mac, server_id=server, ciaddr=ip)
    try:
        sock = _socket(ifname)
    except OSError as exc:
        raise DhcpError(f"cannot open DHCP socket on {ifname}: {exc}") from exc
    try:
        if server:
            try:
                sock.sendto(message, (server, SERVER_PORT))
                return
            except OSError:
                pass  # no route to the server from here: broadcast on the link instead
        sock.sendto(message, ("255.255.255.255", SERVER_PORT))
    except OSError as exc:
        raise DhcpError(f"DHCP release of {ip} on {ifname} failed: {exc}") from exc
    finally:
        sock.close()


def renew_lease(
    ifname: str,
    mac: str,
    address: str,
    server: str | None,
    *,
    rebinding: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
) -> DhcpLease:
    """Extend the lease of `address` (CIDR) held by `ifname` in the current netns: unicast to
    `server` (RENEWING), or broadcast when `rebinding` or the server is unknown (REBINDING).
    Returns the ACKed lease (its address keeps the prefix of `address` when the server omits
    the mask); DhcpNakError on NAK, DhcpError on timeout or socket trouble."""
    check_ifname(ifname)
    ip = str(ipaddress.ip_interface(address).ip)
    deadline = time.monotonic() + timeout
    xid = int.from_bytes(os.urandom(4), "big")
    dest = (server, SERVER_PORT) if server and not rebinding else ("255.255.255.255", SERVER_PORT)
    try:
        sock = _socket(ifname)
    except OSError as exc:
        raise DhcpError(f"cannot open DHCP socket on {ifname}: {exc}") from exc
    try:
        request = encode_request(REQUEST, xid, mac, ciaddr=ip)
        mtype, yiaddr, opts = _exchange(sock, request, xid, {ACK, NAK}, deadline, dest)
    except OSError as exc:
        raise DhcpError(f"DHCP renewal on {ifname} failed: {exc}") from exc
    finally:
        sock.close()
    if mtype == NAK:
        raise DhcpNakError(f"DHCP server refused to renew {ip} on {ifname} (NAK)")
    granted = yiaddr if yiaddr != "0.0.0.0" else ip  # noqa: S104 - an address, not a bind
    lease = lease_from(granted, opts)
    if OPT_SUBNET not in opts:
        prefix = ipaddress.ip_interface(address).network.prefixlen
        lease = dataclasses.replace(lease, address=f"{granted}/{prefix}")
    return lease
