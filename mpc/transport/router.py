"""A worker's single inbound port for the peer links of all its jobs.

A job process listens for its peers on a Unix socket in a private directory of its worker,
never on a TCP port. The worker serves the peer `Exchange` method on its own mutual-TLS
port: it checks the caller's certificate and HELLO, finds the job by the HELLO's job id,
and relays the stream's frames, as raw bytes, to the job's socket. The caller's verified
identity goes with the local call as metadata; the job process trusts that metadata only
on its local socket (`relayed_identity`), and makes every other check itself as before.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import grpc
from google.protobuf.message import DecodeError

from mpc.proto import peer_pb2
from mpc.transport.tls import CHANNEL_OPTIONS, PeerIdentity, peer_identity
from mpc.transport.validate import job_id_problem, name_problem

log = logging.getLogger(__name__)
Frame = peer_pb2.PeerFrame

SERVICE = "mpc.proto.PeerExchange"
METHOD = f"/{SERVICE}/Exchange"
# Who the worker verified on the TLS stream it relays (lowercase: gRPC metadata keys).
NAME_KEY, ROLE_KEY, FINGERPRINT_KEY = "mpc-peer-name", "mpc-peer-role", "mpc-peer-fingerprint"
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")
# A Unix socket's path is limited to 108 bytes on Linux, terminator included.
MAX_SOCKET_PATH = 100


@dataclass(frozen=True)
class Route:
    """What the worker knows of one of its jobs, for routing a peer stream to it."""

    parties: tuple[str, ...]
    rank: int  # the worker's party's rank in the job
    socket: str | None  # the job process's local socket, once it listens


Lookup = Callable[[str], Route | None]


def local_server_credentials() -> grpc.ServerCredentials:
    return grpc.local_server_credentials(grpc.LocalConnectionType.UDS)


def local_channel(path: str) -> grpc.Channel:
    return grpc.secure_channel(f"unix:{path}",
                               grpc.local_channel_credentials(grpc.LocalConnectionType.UDS),
                               options=CHANNEL_OPTIONS)


def relayed_identity(context: grpc.ServicerContext) -> PeerIdentity:
    """The caller the worker verified, from the metadata of a call on the job's local
    socket; any call that did not come over a Unix socket with local credentials is refused."""
    auth = context.auth_context()
    local = (auth.get("transport_security_type") == [b"local"]
             and context.peer().startswith("unix:"))
    if not local:
        context.abort(grpc.StatusCode.UNAUTHENTICATED,
                      "a relayed identity is accepted only on the job's local socket")
    metadata = dict(context.invocation_metadata())
    name, role, fingerprint = (metadata.get(k) for k in (NAME_KEY, ROLE_KEY, FINGERPRINT_KEY))
    if not (isinstance(name, str) and isinstance(role, str) and isinstance(fingerprint, str)
            and name_problem(name) is None and _FINGERPRINT.fullmatch(fingerprint)):
        context.abort(grpc.StatusCode.UNAUTHENTICATED,
                      "the local call does not carry the caller's verified identity")
    return PeerIdentity(name, role, fingerprint)


class PeerRouter:
    """The worker's end of every peer stream to its jobs: check, route, relay."""

    def __init__(self, member: str, lookup: Lookup) -> None:
        self.member = member
        self.lookup = lookup

    def handler(self) -> grpc.GenericRpcHandler:
        """The `Exchange` method for the worker's server; no (de)serializer: raw frames."""
        method: grpc.RpcMethodHandler[bytes, bytes] = grpc.stream_stream_rpc_method_handler(
            self.exchange)
        return grpc.method_handlers_generic_handler(SERVICE, {"Exchange": method})

    def exchange(self, requests: Iterator[bytes], context: grpc.ServicerContext
                 ) -> Iterator[bytes]:
        caller = peer_identity(context)
        try:
            first = next(requests)
        except (StopIteration, grpc.RpcError):
            return
        route, code, problem = self._route(caller, first)
        if problem is not None or route is None or route.socket is None:
            log.warning("refused a peer stream from %s: %s", caller.name, problem)
            context.abort(code, problem or "")
        yield from self._relay(route.socket, caller, first, requests, context)

    def _route(self, caller: PeerIdentity, first: bytes
               ) -> tuple[Route | None, grpc.StatusCode, str | None]:
        denied = grpc.StatusCode.PERMISSION_DENIED
        if caller.role != "party":
            return None, denied, (f"certificate of {caller.name!r} has role {caller.role!r}; "
                                  "only parties open peer streams")
        try:
            hello = Frame.FromString(first)
        except DecodeError:
            hello = None
        if hello is None or hello.kind != Frame.HELLO:
            return None, denied, "the first frame must be HELLO"
        job_id = hello.job_id
        route = self.lookup(job_id) if job_id_problem(job_id) is None else None
        if route is None or caller.name not in route.parties:
            # One answer for both: a non-party learns nothing of which jobs run here.
            return None, grpc.StatusCode.NOT_FOUND, (
                f"{self.member} has no job {job_id[:64]!r} of which {caller.name} is a party")
        r = hello.sender
        if not (0 <= r < len(route.parties)) or route.parties[r] != caller.name:
            return None, denied, (f"the HELLO claims rank {r}; the certificate of "
                                  f"{caller.name!r} belongs to another rank of this job")
        if r >= route.rank:
            return None, denied, f"rank {r} may not dial rank {route.rank}"
        if hello.cert_sha256 != caller.fingerprint:
            return None, denied, "the HELLO names another certificate than the one presented"
        if route.socket is None:
            return None, grpc.StatusCode.NOT_FOUND, (
                f"job {job_id} at {self.member} does not take peer streams yet")
        return route, grpc.StatusCode.OK, None

    def _relay(self, socket: str, caller: PeerIdentity, first: bytes,
               requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        """Both directions, each in order, until either side ends: gRPC carries the
        caller's frames on its own thread; this one carries the job's answers."""
        def upstream() -> Iterator[bytes]:
            yield first
            try:
                yield from requests
            except grpc.RpcError:  # the caller went away: its callback cancels the local call
                return

        channel = local_channel(socket)
        metadata = ((NAME_KEY, caller.name), (ROLE_KEY, caller.role),
                    (FINGERPRINT_KEY, caller.fingerprint))
        relay: grpc.StreamStreamMultiCallable[bytes, bytes] = channel.stream_stream(METHOD)
        call = relay(upstream(), metadata=metadata)

        def cancel() -> None:  # the caller's end (or abort) ends the local call
            call.cancel()

        context.add_callback(cancel)
        try:
            yield from call
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details()
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                # Not the job's own answer: it ended or is unreachable. Say so, and never
                # show the caller a local path.
                details = f"the job's process at {self.member} has ended"
            context.abort(code, details or "")
        finally:
            call.cancel()
            channel.close()
