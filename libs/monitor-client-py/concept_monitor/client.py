"""The trainer SDK over gRPC in Python: streams checkpoints to a concept service
(protos/conceptmonitor/v1), mirroring libs/monitor-client/src/client.ts.

Delivery: every checkpoint stays buffered until the service acknowledges it (its records are
durable). When the stream fails for a transient reason (service restarting, network), the sender
reconnects with backoff, sends RunStart again with resume=true and resends every unacknowledged
checkpoint in order; the service and its store make the resend harmless. When the service rejects
one checkpoint (INVALID_ARGUMENT naming it in the `cm-step` trailer...), that checkpoint is given up
(counted in `rejected_checkpoints`, its error kept) and the others continue on a new stream.

Replicas: `target` names one concept service (`host:port`) or several, as a list or comma-separated
(`"a:50051,b:50051"`), like the TypeScript client. Streams go to the first; when a stream is lost
for a transient reason (UNAVAILABLE: the replica died, restarts, is unreachable), the next attempt
goes to the next replica in the list (round robin, with the same backoff), which continues the run:
RunStart carries resume=true and this start's token, the replicas share the run's state through
JetStream KV, and every unacknowledged checkpoint is resent there (spooled ones follow in order).
A permanent refusal (INVALID_ARGUMENT...) does not move to another replica.

Threads: `send_checkpoint` only encodes and enqueues; one background thread owns the gRPC channel
(created there, lazily, in the process that started the run: a channel made before a fork is never
used after it) and reads the service's messages, and gRPC's request thread writes. HTTP/2 flow
control holds writes when the service reads slower than we send (backpressure).

Bounds and policies (the buffer holds at most `max_buffered_bytes` of encoded checkpoints):
  wait   a checkpoint that finds the buffer full waits for room up to `max_block_s` (None: as long
         as it takes), then raises CmError('TIMEOUT'). Nothing buffered is ever given up.
  drop   a checkpoint that finds the buffer full waits up to `max_block_s` (default 0) and is then
         dropped; buffered checkpoints are dropped after `drop_after_s` without the service.
         Both are counted in `dropped_checkpoints`.
  spool  while the service is unreachable (or the memory buffer is full) checkpoints go to a
         bounded folder on disk (`spool_dir`, `spool_max_bytes`) and go out in order when it is
         back; only when the folder is full too does a checkpoint wait `max_block_s` (default 30 s)
         and then get dropped (counted).
         The random-init baseline (send_baseline) is spooled the same way: with the service
         unreachable when the run starts, baseline_wanted() answers True (the service cannot say
         yet), the initialisations wait on disk ahead of the checkpoints and go out first when it
         is back, so the run has its learned figure from its first checkpoint; a service that has
         the architecture's baseline by then (RunAccepted.baseline_wanted false) is not sent them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Union

import grpc

from ._proto import monitor_pb2 as pb
from .errors import CmError
from .spool import Spool
from .wire import (
    DEFAULT_CHUNK_BYTES,
    HEALTH_METHOD,
    MONITOR_METHOD,
    CheckpointResult,
    LayerActivations,
    RunSpec,
    checkpoint_messages,
    payload_bytes,
    result_from_ack,
    run_end_message,
    run_start_message,
)

log = logging.getLogger("concept_monitor")

POLICIES = ("wait", "drop", "spool")
STEP_TRAILER = "cm-step"

#: Status codes after which resending the same bytes cannot help (monitor.proto header).
PERMANENT = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
}
CM_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: "INVALID_ARGUMENT",
    grpc.StatusCode.NOT_FOUND: "NOT_FOUND",
    grpc.StatusCode.ALREADY_EXISTS: "ALREADY_EXISTS",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "RESOURCE_EXHAUSTED",
    grpc.StatusCode.UNAVAILABLE: "UNAVAILABLE",
    grpc.StatusCode.DEADLINE_EXCEEDED: "TIMEOUT",
    grpc.StatusCode.FAILED_PRECONDITION: "CONFIG",
}


def _identity(b: bytes) -> bytes:
    return b


def parse_targets(target: Union[str, Sequence[str]]) -> List[str]:
    """The replicas a client streams to, in order: `"a:1,b:2"` or `["a:1", "b:2"]` (entries of a
    list may themselves be comma-separated); blanks are ignored, an empty result is an error."""
    if isinstance(target, str):
        entries: Sequence[object] = [target]
    elif isinstance(target, (list, tuple)):
        entries = target
    else:
        raise CmError(
            "INVALID_ARGUMENT",
            f"target must be host:port, a comma-separated string or a list of them, got {type(target).__name__}",
        )
    out: List[str] = []
    for e in entries:
        if not isinstance(e, str):
            raise CmError("INVALID_ARGUMENT", f"every target must be a host:port string, got {e!r}")
        out.extend(t.strip() for t in e.split(",") if t.strip())
    if not out:
        raise CmError(
            "INVALID_ARGUMENT", "target names no concept service", {"target": repr(target)}, "pass host:port"
        )
    return out


@dataclass
class _Item:
    kind: str  # "checkpoint" | "end" | "baseline" (a random initialisation, step = -2 - index)
    step: int
    messages: List[bytes]
    nbytes: int
    written_on: int = 0
    #: While disconnected (policy drop): when it is given up.
    deadline: Optional[float] = None
    #: Read back from the spool: its sender was answered already (a refusal is only logged).
    spooled: bool = False


@dataclass
class _Conn:
    id: int
    ready: bool = False
    dead: bool = False
    finish: bool = False
    call: Optional[grpc.Future] = None


@dataclass
class ClientStats:
    connected: bool = False
    acknowledged_checkpoints: int = 0
    dropped_checkpoints: int = 0
    rejected_checkpoints: int = 0
    resent_checkpoints: int = 0
    spooled_checkpoints: int = 0
    #: Random initialisations written to the spool, and those not sent: the service had the baseline by then.
    spooled_baselines: int = 0
    skipped_baselines: int = 0
    reconnects: int = 0
    pending_checkpoints: int = 0
    buffered_bytes: int = 0
    spool_bytes: int = 0
    sent_bytes: int = 0
    errors: List[str] = field(default_factory=list)

    def as_dict(self) -> Dict[str, object]:
        return dict(self.__dict__)


class MonitorClient:
    """One run at a time to a concept service (or the next of its replicas). Thread-safe; never
    blocks longer than its policy."""

    def __init__(
        self,
        target: Union[str, Sequence[str]],
        policy: str = "wait",
        max_block_s: Optional[float] = -1.0,
        max_buffered_bytes: int = 512 * 1024 * 1024,
        dtype: str = "float32",
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        spool_dir: Optional[str] = None,
        spool_max_bytes: int = 2 * 1024 * 1024 * 1024,
        drop_after_s: float = 5.0,
        start_timeout_s: float = 10.0,
        reconnect_initial_s: float = 0.1,
        reconnect_max_s: float = 2.0,
        channel_options: Sequence[tuple] = (),
        on_ack: Optional[Callable[[CheckpointResult], None]] = None,
    ) -> None:
        if policy not in POLICIES:
            raise CmError("INVALID_ARGUMENT", f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        if dtype not in ("float32", "float16"):
            raise CmError("INVALID_ARGUMENT", f"dtype must be float32 or float16, got {dtype!r}")
        if max_buffered_bytes <= 0:
            raise CmError("INVALID_ARGUMENT", f"max_buffered_bytes must be > 0, got {max_buffered_bytes}")
        if max_block_s is not None and max_block_s == -1.0:
            max_block_s = {"wait": None, "drop": 0.0, "spool": 30.0}[policy]
        if max_block_s is not None and max_block_s < 0:
            raise CmError("INVALID_ARGUMENT", f"max_block_s must be >= 0 or None, got {max_block_s}")
        #: The replicas, in order (see the module doc); `target` is the one streams go to now.
        self.targets = parse_targets(target)
        self._target_index = 0
        self.policy = policy
        self.max_block_s = max_block_s
        self.max_buffered_bytes = max_buffered_bytes
        self.dtype = dtype
        self.chunk_bytes = chunk_bytes
        self.drop_after_s = drop_after_s
        self.start_timeout_s = start_timeout_s
        self.reconnect_initial_s = reconnect_initial_s
        self.reconnect_max_s = reconnect_max_s
        self.channel_options = list(channel_options)
        self.on_ack = on_ack
        self._spool_args = (spool_dir, spool_max_bytes)
        self._spool: Optional[Spool] = None

        self._cv = threading.Condition()
        self._spec: Optional[RunSpec] = None
        self._accepted = False
        self._resume_asked = False
        self._start_token = ""
        self._fatal: Optional[CmError] = None
        self._items: List[_Item] = []
        self._buffered = 0
        self._conn: Optional[_Conn] = None
        self._conn_seq = 0
        self._closed = False
        self._ending = False
        self._thread: Optional[threading.Thread] = None
        self._pid = os.getpid()
        self._stats = ClientStats()
        self._results: Dict[int, CheckpointResult] = {}
        #: RunAccepted.baseline_wanted of the run's last accepted stream (learned-concept baseline)
        self._baseline_wanted = False
        #: RandomInitAck per random-init index: "" once dissected, else the service's reason
        self._baseline_acks: Dict[int, str] = {}
        self._outage_logged = False
        self._spec_done = False

    # ---- public ------------------------------------------------------------------------

    @property
    def target(self) -> str:
        """The replica streams go to now."""
        return self.targets[self._target_index]

    def stats(self) -> ClientStats:
        with self._cv:
            s = ClientStats(**{k: v for k, v in self._stats.__dict__.items() if k != "errors"})
            s.errors = list(self._stats.errors)
            s.connected = bool(self._conn and self._conn.ready)
            s.pending_checkpoints = sum(1 for i in self._items if i.kind == "checkpoint") + (
                self._spool.checkpoints() if self._spool else 0
            )
            s.buffered_bytes = self._buffered
            s.spool_bytes = self._spool.bytes if self._spool else 0
            return s

    def result(self, step: int) -> Optional[CheckpointResult]:
        """The service's summary of an acknowledged checkpoint."""
        with self._cv:
            return self._results.get(step)

    def start_run(self, spec: RunSpec, resume: bool = False) -> None:
        """Register the run and start the sender. Waits up to `start_timeout_s` for the service to
        accept the run: a refusal (unknown bundle, bad layers, a run id already used without
        `resume`) raises; an unreachable service does not (the checkpoints are buffered, spooled or
        dropped per the policy)."""
        self._assert_usable()
        with self._cv:
            if self._spec is not None:
                raise CmError("INVALID_ARGUMENT", f"run {self._spec.run_id} is still running on this client; end it first")
            self._spec = spec
            self._resume_asked = resume
            self._start_token = uuid.uuid4().hex
            if self.policy == "spool" and self._spool is None:
                self._spool = Spool(*self._spool_args)
            self._thread = threading.Thread(target=self._sender, name="concept-monitor-sender", daemon=True)
            self._thread.start()
            deadline = time.monotonic() + self.start_timeout_s
            while not (self._conn and self._conn.ready) and self._fatal is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(left)
            if self._fatal is not None:
                raise self._fatal
            if not (self._conn and self._conn.ready):
                log.warning(
                    "concept service %s unreachable for %.1f s; run %s goes on, checkpoints are %s until it returns",
                    self.target,
                    self.start_timeout_s,
                    spec.run_id,
                    {"wait": "buffered", "drop": "dropped", "spool": "spooled to disk"}[self.policy],
                )

    def send_checkpoint(
        self, step: int, layers: Sequence[LayerActivations], metrics: Optional[Dict[str, float]] = None
    ) -> bool:
        """Encode and enqueue a checkpoint. Returns False when the policy dropped it."""
        self._assert_usable()
        if self._spec is None:
            raise CmError("NOT_FOUND", "no run started on this client", hint="call start_run first")
        if self._fatal is not None:
            raise self._fatal
        messages = checkpoint_messages(step, layers, metrics or {}, self.dtype, self.chunk_bytes)
        nbytes = payload_bytes(messages)
        limit = self.max_buffered_bytes if self.policy != "spool" else max(self.max_buffered_bytes, self._spool_args[1])
        if nbytes > limit:
            raise CmError(
                "RESOURCE_EXHAUSTED",
                f"checkpoint {step} needs {nbytes} bytes, more than the buffer bound {limit}",
                {"step": step, "bytes": nbytes},
                "raise max_buffered_bytes, pool on the client, or use dtype float16",
            )
        with self._cv:
            deadline = None if self.max_block_s is None else time.monotonic() + self.max_block_s
            while True:
                if self._closed or self._fatal is not None:
                    raise self._fatal or CmError("UNAVAILABLE", "monitor client is closed")
                if self.policy == "spool":
                    assert self._spool is not None
                    connected = bool(self._conn and self._conn.ready)
                    if connected and len(self._spool) == 0 and self._buffered + nbytes <= self.max_buffered_bytes:
                        self._push(_Item("checkpoint", step, messages, nbytes))
                        return True
                    if self._spool.fits(nbytes):
                        self._spool.put(step, messages)
                        self._stats.spooled_checkpoints += 1
                        self._cv.notify_all()
                        return True
                elif self._buffered + nbytes <= self.max_buffered_bytes:
                    self._push(_Item("checkpoint", step, messages, nbytes))
                    return True
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._cv.wait(left if left is not None else 1.0)
            if self.policy == "wait":
                raise CmError(
                    "TIMEOUT",
                    f"checkpoint {step}: send buffer full for {self.max_block_s} s",
                    {"step": step, "buffered_bytes": self._buffered},
                    "the service is slower than training or down: raise max_block_s or max_buffered_bytes, or use policy drop/spool",
                )
            self._stats.dropped_checkpoints += 1
            log.warning("checkpoint %d dropped: buffer full (%d dropped so far)", step, self._stats.dropped_checkpoints)
            return False

    def baseline_wanted(self) -> bool:
        """Whether the service has no random-init baseline of this run's architecture on its bundle
        yet (RunAccepted.baseline_wanted): then send_baseline() the model's random initialisations
        before the first checkpoint (docs/dissect.md, "Learned concepts"). Before any service
        accepted the run: True under policy spool (they are spooled and offered first when the
        service is back), False otherwise."""
        with self._cv:
            if self._spec is None or self._fatal is not None:
                return False
            if self._accepted:
                return self._baseline_wanted
            return self._spool is not None

    def send_baseline(
        self, index: int, inits: int, layers: Sequence[LayerActivations], timeout_s: Optional[float] = 300.0
    ) -> None:
        """Send random initialisation `index` of `inits` (the monitored layers of a freshly
        initialised copy of the model) and wait up to `timeout_s` for the service to dissect it.
        Raises with the service's reason when it refused it. Policy spool: while the service is
        unreachable (or checkpoints are spooled before it) it goes to the spool and returns at once;
        if the connection is lost while it waits, it returns and the initialisation is resent."""
        self._assert_usable()
        if self._spec is None:
            raise CmError("NOT_FOUND", "no run started on this client", hint="call start_run first")
        messages = checkpoint_messages(0, layers, {}, self.dtype, self.chunk_bytes)
        messages[-1] = pb.TrainerMessage(random_init_end=pb.RandomInitEnd(index=index, inits=inits)).SerializeToString()
        nbytes = payload_bytes(messages)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cv:
            self._baseline_acks.pop(index, None)
            sp = self._spool
            connected = bool(self._conn and self._conn.ready)
            if sp is not None and not (
                connected and len(sp) == 0 and self._buffered + nbytes <= self.max_buffered_bytes
            ):
                if not sp.fits(sum(4 + len(m) for m in messages)):
                    log.warning(
                        "random init %d not spooled: spool %s full; the learned figure waits for a complete baseline",
                        index,
                        sp.dir,
                    )
                    return
                sp.put(-2 - index, messages)
                self._stats.spooled_baselines += 1
                self._cv.notify_all()
                return
            self._push(_Item("baseline", -2 - index, messages, nbytes))
            while index not in self._baseline_acks:
                if self._closed or self._fatal is not None:
                    raise self._fatal or CmError("UNAVAILABLE", "monitor client is closed")
                if sp is not None and not (self._conn and self._conn.ready):
                    return  # policy spool: training goes on, the initialisation is resent on reconnect
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise CmError("TIMEOUT", f"random init {index}: no answer from the service in {timeout_s} s")
                self._cv.wait(left if left is not None else 1.0)
            error = self._baseline_acks.pop(index)
        if error:
            raise CmError("INVALID_ARGUMENT", f"random init {index} refused: {error}", {"index": index})

    def end_run(self, status: str = "completed", timeout_s: Optional[float] = 60.0) -> ClientStats:
        """Send RunEnd after every checkpoint and wait up to `timeout_s` for the service to confirm;
        what is still undelivered then is counted as dropped. Returns the final stats."""
        with self._cv:
            if self._spec is None:
                return self.stats()
            if self._fatal is None and not self._closed:
                self._ending = True
                msg = [run_end_message(status)]
                if self._spool is not None and len(self._spool) > 0:
                    self._spool.put(-1, msg)  # behind the spooled checkpoints, in order
                else:
                    self._push(_Item("end", -1, msg, 64))
                deadline = None if timeout_s is None else time.monotonic() + timeout_s
                while self._has_pending() and self._fatal is None:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        break
                    self._cv.wait(left if left is not None else 1.0)
            undelivered = sum(1 for i in self._items if i.kind == "checkpoint")
            if self._spool is not None:
                undelivered += self._spool.checkpoints()
            if undelivered:
                self._stats.dropped_checkpoints += undelivered
                self._stats.errors.append(f"{undelivered} checkpoint(s) undelivered when the run ended")
                log.warning("run %s ended with %d checkpoint(s) undelivered", self._spec.run_id, undelivered)
            self._items = []
            self._buffered = 0
        return self.stats()

    def close(self, status: str = "completed", timeout_s: Optional[float] = 60.0) -> ClientStats:
        """End the run (if one is running) and stop the sender thread; returns the final stats."""
        if os.getpid() != self._pid:
            return ClientStats()  # a forked child: the parent's channel is not ours to touch
        stats = self.end_run(status, timeout_s) if self._spec is not None and not self._closed else self.stats()
        with self._cv:
            self._closed = True
            conn = self._conn
            self._cv.notify_all()
        if conn and conn.call is not None:
            conn.call.cancel()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._spool is not None:
            self._spool.close()
        return stats

    # ---- internals ---------------------------------------------------------------------

    def _assert_usable(self) -> None:
        if os.getpid() != self._pid:
            raise CmError(
                "INVALID_ARGUMENT",
                "monitor client used in a forked child process; only the process that created it sends",
                hint="create the watcher in the training process (rank 0), not in DataLoader workers",
            )
        if self._closed:
            raise CmError("UNAVAILABLE", "monitor client is closed")

    def _has_pending(self) -> bool:
        return bool(self._items) or bool(self._spool and len(self._spool) > 0)

    def _push(self, item: _Item) -> None:
        self._items.append(item)
        self._buffered += item.nbytes
        self._arm_deadlines()
        self._cv.notify_all()

    def _refill(self) -> None:
        """Move spooled checkpoints into memory, oldest first, while the buffer has room."""
        sp = self._spool
        while sp is not None and len(sp) > 0 and (
            not self._items or self._buffered + sp.peek_bytes() <= self.max_buffered_bytes
        ):
            step, messages = sp.pop()
            if step <= -2 and not self._baseline_wanted:
                # the service has the architecture's baseline (another run made it meanwhile)
                self._stats.skipped_baselines += 1
                continue
            kind = "baseline" if step <= -2 else "end" if step < 0 else "checkpoint"
            self._items.append(_Item(kind, step, messages, payload_bytes(messages), spooled=True))
            self._buffered += self._items[-1].nbytes

    def _release(self, item: _Item) -> None:
        self._buffered -= item.nbytes
        self._cv.notify_all()

    def _arm_deadlines(self) -> None:
        if self.policy != "drop" or (self._conn and self._conn.ready):
            return
        now = time.monotonic()
        for i in self._items:
            if i.deadline is None:
                i.deadline = now + self.drop_after_s

    def _expire(self) -> None:
        """Policy drop, disconnected: give up buffered checkpoints past their deadline."""
        if self.policy != "drop" or (self._conn and self._conn.ready):
            return
        now = time.monotonic()
        expired = [i for i in self._items if i.deadline is not None and i.deadline <= now]
        if not expired:
            return
        self._items = [i for i in self._items if i not in expired]
        for i in expired:
            self._release(i)
            if i.kind == "checkpoint":
                self._stats.dropped_checkpoints += 1
        log.warning(
            "service %s unreachable for %.1f s: dropped %d item(s) (%d checkpoints dropped so far)",
            self.target,
            self.drop_after_s,
            len(expired),
            self._stats.dropped_checkpoints,
        )

    def _requests(self, conn: _Conn, resume: bool) -> Iterator[bytes]:
        """What gRPC writes on one stream: RunStart, then (once accepted) every item not yet
        written on this stream, in order."""
        assert self._spec is not None
        yield run_start_message(self._spec, resume or self._resume_asked, self._start_token)
        with self._cv:
            while not conn.ready and not conn.dead:
                self._cv.wait(0.5)
        while True:
            with self._cv:
                while True:
                    if conn.dead or conn.finish:
                        return
                    self._refill()
                    item = next((i for i in self._items if i.written_on != conn.id), None)
                    if item is not None:
                        break
                    self._cv.wait(0.5)
                if item.written_on != 0 and item.kind == "checkpoint":
                    self._stats.resent_checkpoints += 1
                item.written_on = conn.id
                messages = item.messages
            for m in messages:
                if conn.dead:
                    return
                self._stats.sent_bytes += len(m)
                yield m

    def _on_message(self, conn: _Conn, m: "pb.ServiceMessage") -> None:
        body = m.WhichOneof("body")
        with self._cv:
            if conn.dead:
                return
            if body == "run_accepted":
                conn.ready = True
                self._baseline_wanted = bool(m.run_accepted.baseline_wanted)
                if self._accepted:
                    self._stats.reconnects += 1
                    log.info("reconnected to %s; resending %d unacknowledged item(s)", self.target, len(self._items))
                self._accepted = True
                self._outage_logged = False
                for i in self._items:
                    i.deadline = None
            elif body == "checkpoint_ack":
                step = int(m.checkpoint_ack.step)
                idx = next((k for k, i in enumerate(self._items) if i.kind == "checkpoint" and i.step == step), -1)
                if idx < 0:
                    return  # an ack for a checkpoint already given up on
                item = self._items.pop(idx)
                self._release(item)
                self._stats.acknowledged_checkpoints += 1
                result = result_from_ack(m.checkpoint_ack)
                self._results[step] = result
                if len(self._results) > 1000:
                    self._results.pop(min(self._results))
            elif body == "random_init_ack":
                ack = m.random_init_ack
                idx = next(
                    (k for k, i in enumerate(self._items) if i.kind == "baseline" and i.step == -2 - int(ack.index)), -1
                )
                if idx >= 0:
                    item = self._items.pop(idx)
                    self._release(item)
                    if item.spooled:
                        if ack.error:
                            log.warning("spooled random init %d refused: %s", int(ack.index), ack.error)
                    else:
                        self._baseline_acks[int(ack.index)] = ack.error
            elif body == "run_ended":
                idx = next((k for k, i in enumerate(self._items) if i.kind == "end"), -1)
                if idx >= 0:
                    self._release(self._items.pop(idx))
                conn.finish = True
                self._spec_done = True
            self._cv.notify_all()
        if body == "checkpoint_ack" and self.on_ack is not None:
            try:
                self.on_ack(result)
            except Exception:  # a user callback must not kill the sender
                log.exception("on_ack callback failed")

    def _on_ended(self, conn: _Conn, code: grpc.StatusCode, details: str, trailers: Sequence[tuple]) -> bool:
        """Handle the end of a stream; return True when the sender should back off before the
        next connection."""
        with self._cv:
            conn.dead = True
            if self._conn is conn:
                self._conn = None
            self._cv.notify_all()
            if self._closed:
                return False
            if code == grpc.StatusCode.OK and not self._items:
                return False
            if code != grpc.StatusCode.OK and code in PERMANENT:
                err = CmError(
                    CM_CODE.get(code, "INTERNAL"),
                    f"concept service {self.target}: {details or code.name}",
                    {"grpc_code": code.name, "target": self.target},
                )
                if not conn.ready:
                    # The service refused the run itself: nothing can go through.
                    self._fatal = err
                    self._stats.errors.append(str(err))
                    self._stats.dropped_checkpoints += sum(1 for i in self._items if i.kind == "checkpoint")
                    self._items = []
                    self._buffered = 0
                    log.error("run refused: %s", err)
                    return False
                step_text = next((v for k, v in trailers if k == STEP_TRAILER), None)
                if step_text is not None:
                    step = int(step_text)
                    idx = next((k for k, i in enumerate(self._items) if i.kind == "checkpoint" and i.step == step), -1)
                else:
                    idx = next((k for k, i in enumerate(self._items) if i.written_on == conn.id), -1)
                if idx >= 0:
                    item = self._items.pop(idx)
                    self._release(item)
                    self._stats.rejected_checkpoints += 1
                self._stats.errors.append(str(err))
                log.warning("checkpoint rejected: %s", err)
                return False  # the others continue on a fresh stream right away
            if not self._outage_logged:
                self._outage_logged = True
                log.warning(
                    "stream to %s lost (%s: %s); reconnecting, %d item(s) to resend",
                    self.target,
                    code.name,
                    details,
                    len(self._items),
                )
            self._arm_deadlines()
            # with several replicas, the next attempt goes to the next one
            if len(self.targets) > 1:
                self._target_index = (self._target_index + 1) % len(self.targets)
                log.debug("next attempt: %s", self.target)
            return True

    def _sender(self) -> None:
        """The background thread: owns the channel, one stream at a time, reconnecting with backoff."""
        options = [
            ("grpc.max_send_message_length", -1),
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            # Reconnect quickly after a service restart (the default backs off to 2 minutes).
            ("grpc.initial_reconnect_backoff_ms", int(self.reconnect_initial_s * 1000)),
            ("grpc.max_reconnect_backoff_ms", int(self.reconnect_max_s * 1000)),
            ("grpc.min_reconnect_backoff_ms", int(self.reconnect_initial_s * 1000)),
            ("grpc.enable_retries", 0),
            *self.channel_options,
        ]
        # one channel per replica, made when first used
        channels: Dict[str, grpc.Channel] = {}
        monitors: Dict[str, Callable[..., grpc.Future]] = {}

        def monitor_of(target: str) -> Callable[..., grpc.Future]:
            if target not in monitors:
                channels[target] = grpc.insecure_channel(target, options=options)
                monitors[target] = channels[target].stream_stream(
                    MONITOR_METHOD, request_serializer=_identity, response_deserializer=pb.ServiceMessage.FromString
                )
            return monitors[target]

        delay = self.reconnect_initial_s
        try:
            while True:
                with self._cv:
                    while True:
                        if self._closed or self._fatal is not None:
                            return
                        if self._spec_done and not self._items:
                            return
                        self._expire()
                        break
                    self._conn_seq += 1
                    conn = _Conn(self._conn_seq)
                    self._conn = conn
                    resume = self._accepted
                    target = self.target
                call = monitor_of(target)(self._requests(conn, resume))
                conn.call = call
                code, details, trailers = grpc.StatusCode.OK, "", ()
                try:
                    for m in call:
                        self._on_message(conn, m)
                        if conn.ready:
                            delay = self.reconnect_initial_s
                except grpc.RpcError as e:
                    code = e.code()
                    details = e.details() or ""
                    trailers = tuple(e.trailing_metadata() or ())
                backoff = self._on_ended(conn, code, details, trailers)
                if backoff:
                    with self._cv:
                        end = time.monotonic() + delay
                        while not self._closed:
                            left = end - time.monotonic()
                            if left <= 0:
                                break
                            self._cv.wait(min(left, 0.2))
                            self._expire()
                    delay = min(delay * 2, self.reconnect_max_s)
        finally:
            for channel in channels.values():
                channel.close()


def health(target: str, timeout_s: float = 5.0) -> Dict[str, object]:
    """The service's Health answer: {'status': 'SERVING'|'NOT_SERVING'|'UNKNOWN', 'detail', 'active_streams'}."""
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(
            HEALTH_METHOD,
            request_serializer=pb.HealthRequest.SerializeToString,
            response_deserializer=pb.HealthResponse.FromString,
        )
        try:
            r = call(pb.HealthRequest(), timeout=timeout_s, wait_for_ready=True)
        except grpc.RpcError as e:
            raise CmError(
                "UNAVAILABLE", f"concept service {target}: {e.details() or e.code().name}", {"target": target}
            ) from e
        return {
            "status": pb.HealthResponse.ServingStatus.Name(r.status),
            "detail": r.detail,
            "active_streams": int(r.active_streams),
        }
