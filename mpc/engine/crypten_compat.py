"""Every workaround CrypTen 0.4.1 needs lives here, and only here.

1. Import: crypten/nn/onnx_converter.py imports torch.onnx._internal.registration,
   which current torch no longer has. CrypTen only needs the name to exist (it is
   used by the ONNX model converter, which this project never calls), so a stub
   module is registered before the import.
2. Communicator: `crypten.communicator.get()` only knows its two built-in classes.
   Its module-level name `DistributedCommunicator` is looked up at call time, so
   binding our class to that name makes `crypten.init()` create ours.
3. Randomness: CrypTen draws masks and zero sharings from torch.Generator
   (Mersenne Twister) seeded with 64-bit integers, and binds the two rng functions
   *by name* into several modules. Each binding is replaced by a function that
   draws from our ChaCha20 streams and refuses a torch.Generator; `_setup_prng`
   (called by `crypten.init()`) is replaced by our seed exchange.
4. Providers: the tuple provider registry is a module-private dict; ours is added
   and the built-in ones are refused unless a unit test explicitly allows them.
5. Process-global state: CrypTen keeps its communicator, its generators
   (`crypten.generators`), the provider and `_setup_prng` in module or class globals.
   Each patched hook finds the *calling thread's* session instead (`bind`/`current`):
   the communicator instance (communicator.py), the four streams behind
   `crypten.generators`, the provider, the PRNG set-up and whether built-in providers are
   allowed. A job process runs one session on one thread, where this is exactly the
   process-global behaviour; several sessions can run as threads of one process
   (mpc.testing.inprocess) without sharing anything. CrypTen's own thread mode
   (InProcessCommunicator) makes only the communicator thread-local and shares the
   generators between threads, which breaks pseudo-random zero sharings; it is not used.
6. Autograd: every CrypTensor operation toggles the class attribute
   `CrypTensor.AUTOGRAD_ENABLED` (no_grad() around the call), which threads would race on
   and could leave off. `parties_as_threads()` turns it off for the duration (the path
   CrypTen takes anyway for tensors without requires_grad). CrypTen functions that change
   `crypten.cfg` temporarily (max, exp, log, reciprocal, sqrt: cfg.temp_override) are not
   safe in threads; MpcContext/Secret use none of them.
7. Dropout in training with autograd (crypten.nn.Dropout, `x.dropout()` on a tensor that
   requires grad): CrypTen's autograd functions draw a *public* mask, the same at every
   party, with `torch.rand(generator=crypten.generators["global"])`, which torch refuses for
   our streams. Their forward is replaced by one that draws the same kind of mask from the
   global stream. Without autograd, CrypTen's dropout draws a secret-shared mask through
   `crypten.rand` (the rng functions of 3., each party's local stream) and is left as it is.
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
import types
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from mpc.errors import EngineError

if TYPE_CHECKING:
    from mpc.engine.rng import SequentialStream

log = logging.getLogger(__name__)
CRYPTEN_VERSION = "0.4.1"
PROVIDER_NAME = "DEALER"
_RNG_FUNCTIONS = ("generate_random_ring_element", "generate_kbit_random_tensor")
# Modules that bind the rng functions by name (checked: a new binding fails a test).
RNG_BINDINGS = (
    "crypten.common.rng",
    "crypten.mpc.primitives.arithmetic",
    "crypten.mpc.primitives.binary",
    "crypten.mpc.provider.ttp_provider",
    "crypten.mpc.provider.tfp_provider",
)

_crypten: Any = None
_installed = False
_install_lock = threading.Lock()


def load_crypten() -> Any:
    """Import CrypTen once, with the import-time workaround; check its version."""
    global _crypten
    if _crypten is not None:
        return _crypten
    name = "torch.onnx._internal.registration"
    try:
        importlib.import_module(name)
    except ImportError:
        stub = types.ModuleType(name)
        vars(stub)["registry"] = None  # the one name crypten's import reads (a module's dict)
        sys.modules[name] = stub
    import crypten

    if crypten.__version__ != CRYPTEN_VERSION:
        raise EngineError(
            f"this project is built and tested against crypten {CRYPTEN_VERSION}, "
            f"found {crypten.__version__}; install it with `make install`"
        )
    _crypten = crypten
    return crypten


@dataclass
class Binding:
    """One session's answers to CrypTen's global look-ups, for the thread that runs it."""

    provider: Any
    setup_prng: Callable[[], None]
    allow_builtin_providers: bool = False
    streams: dict[str, Any] = field(default_factory=dict)  # prev, next, local, global


_thread = threading.local()


def bind(binding: Binding) -> None:
    """Make `binding` what CrypTen's hooks find on the calling thread."""
    if current() is not None:
        raise EngineError("a CrypTen session is already running on this thread")
    _thread.binding = binding


def unbind() -> None:
    _thread.binding = None


def current() -> Binding | None:
    binding: Binding | None = getattr(_thread, "binding", None)
    return binding


class ThreadStreams(MutableMapping[Any, Any]):
    """Stands in for one of `crypten.generators`' per-device dicts: the calling thread's
    session stream under the CPU device, nothing elsewhere."""

    def __init__(self, key: str) -> None:
        self.key = key

    def _streams(self) -> dict[str, Any]:
        binding = current()
        return binding.streams if binding is not None else {}

    def __getitem__(self, device: Any) -> Any:
        stream = self._streams().get(self.key)
        if stream is None or torch.device(device).type != "cpu":
            raise KeyError(device)
        return stream

    def __setitem__(self, device: Any, stream: Any) -> None:
        if torch.device(device).type != "cpu":
            raise EngineError("only CPU tensors are supported")
        binding = current()
        if binding is None:
            raise EngineError("CrypTen's generators are set outside a job session")
        binding.streams[self.key] = stream

    def __delitem__(self, device: Any) -> None:
        self[device]  # noqa: B018 (raises KeyError when absent)
        del self._streams()[self.key]

    def __iter__(self) -> Iterator[Any]:
        return iter([torch.device("cpu")] if self.key in self._streams() else [])

    def __len__(self) -> int:
        return 1 if self.key in self._streams() else 0


def _stream_for(generator: Any, device: Any) -> SequentialStream:
    from mpc.engine.rng import SequentialStream

    if device is not None and torch.device(device).type != "cpu":
        raise EngineError("only CPU tensors are supported")
    if generator is None:
        binding = current()
        generator = binding.streams.get("local") if binding is not None else None
        if generator is None:
            raise EngineError("CrypTen drew randomness outside a job session")
    if not isinstance(generator, SequentialStream):
        raise EngineError(
            f"CrypTen asked for randomness from {type(generator).__name__}; only the "
            "project's cryptographic streams may be used"
        )
    return generator


def generate_random_ring_element(size: Any, ring_size: int = 2**64, generator: Any = None,
                                 **kwargs: Any) -> torch.Tensor:
    if ring_size != 2**64:
        raise EngineError(f"ring size {ring_size} is not supported (only 2^64)")
    return _stream_for(generator, kwargs.get("device")).ring(_size(size))


def generate_kbit_random_tensor(size: Any, bitlength: int | None = None, generator: Any = None,
                                **kwargs: Any) -> torch.Tensor:
    stream = _stream_for(generator, kwargs.get("device"))
    return stream.bits(_size(size), 64 if bitlength is None else bitlength)


def uniform(size: Any, generator: Any, device: Any = None) -> torch.Tensor:
    """What torch.rand(size, generator=...) draws (float32 in [0, 1), 24 random bits each),
    from one of the project's streams."""
    bits = _stream_for(generator, device).bits(_size(size), 24)
    return bits.to(torch.float32) / float(1 << 24)


def _public_mask_dropout(ctx: Any, input: Any, p: float, training: bool, inplace: bool,
                         mask_size: tuple[int, ...]) -> Any:
    """The forward of CrypTen's autograd dropout (7. above): a mask of `mask_size`, common to
    every party, broadcast over `input`; saved as CrypTen's backward reads it."""
    if not training:
        return input if inplace else input.clone()
    if not 0.0 <= p < 1.0:
        raise EngineError(f"dropout in training takes a probability in [0, 1), got {p}")
    if inplace:
        log.warning("dropout in training with inplace=True: the input itself is updated")
    crypten = load_crypten()
    mask = (uniform(mask_size, crypten.generators["global"][input.device], input.device)
            > p).to(torch.float32)
    size = tuple(input.size())
    mask = mask.reshape(mask_size + (1,) * (len(size) - len(mask_size))).expand(size)
    mask = mask.contiguous()
    scale = mask.div(1.0 - p)
    result = input.mul_(scale) if inplace else input.mul(scale)
    ctx.save_multiple_for_backward([mask, p])
    return result


def _dropout_forward(ctx: Any, input: Any, p: float = 0.5, training: bool = True,
                     inplace: bool = False) -> Any:
    return _public_mask_dropout(ctx, input, p, training, inplace, tuple(input.size()))


def _feature_dropout_forward(ctx: Any, input: Any, p: float = 0.5, training: bool = True,
                             inplace: bool = False) -> Any:
    # one draw per (batch, channel), as CrypTen's _feature_dropout
    return _public_mask_dropout(ctx, input, p, training, inplace, tuple(input.size())[:2])


def _size(size: Any) -> tuple[int, ...]:
    if isinstance(size, int):
        return (size,)
    return tuple(int(d) for d in size)


def _setup_prng() -> None:
    """crypten._setup_prng, called by crypten.init(): the calling thread's session's."""
    binding = current()
    if binding is None:
        raise EngineError("crypten.init() called outside a job session")
    binding.setup_prng()


def install(communicator_cls: type) -> None:
    """Point CrypTen at our communicator, provider hooks and randomness (patched once a
    process; what each hook finds is the calling thread's Binding), and at the dealer."""
    crypten = load_crypten()
    crypten.cfg.mpc.provider = PROVIDER_NAME
    with _install_lock:
        if not _installed:
            _patch(crypten, communicator_cls)


def _patch(crypten: Any, communicator_cls: type) -> None:
    global _installed
    import crypten.communicator as comm
    import crypten.gradients as gradients
    import crypten.mpc as cmpc

    comm.DistributedCommunicator = communicator_cls
    for module_name in RNG_BINDINGS:
        module = importlib.import_module(module_name)
        for fn in _RNG_FUNCTIONS:
            if hasattr(module, fn):
                setattr(module, fn, globals()[fn])
    crypten._setup_prng = _setup_prng
    gradients.AutogradDropout.forward = staticmethod(_dropout_forward)
    gradients.AutogradFeatureDropout.forward = staticmethod(_feature_dropout_forward)
    for key in list(crypten.generators):
        crypten.generators[key] = ThreadStreams(key)
    registry = cmpc.__dict__["__SUPPORTED_PROVIDERS"]

    def get_default_provider() -> Any:
        name = crypten.cfg.mpc.provider
        binding = current()
        if name == PROVIDER_NAME:
            if binding is None:
                raise EngineError("no job session: the dealer provider is not bound")
            return binding.provider
        if binding is None or not binding.allow_builtin_providers:
            raise EngineError(
                f"CrypTen's {name} provider is refused: correlated randomness comes from the "
                "dealer (TrustedFirstParty would let party 0 learn every triple)"
            )
        return registry[name]

    cmpc.get_default_provider = get_default_provider
    _installed = True


@contextmanager
def parties_as_threads() -> Iterator[None]:
    """While several sessions run as threads of this process: CrypTen's autograd switch
    off (see 6. above), restored afterwards."""
    load_crypten()
    from crypten.cryptensor import CrypTensor

    prior = CrypTensor.AUTOGRAD_ENABLED
    CrypTensor.set_grad_enabled(False)
    try:
        yield
    finally:
        CrypTensor.set_grad_enabled(prior)


def stray_rng_bindings() -> list[str]:
    """Modules of CrypTen that still hold CrypTen's own rng functions (should be none)."""
    load_crypten()
    stray = []
    for name, module in list(sys.modules.items()):
        if not name.startswith("crypten") or module is None:
            continue
        for fn in _RNG_FUNCTIONS:
            bound = getattr(module, fn, None)
            if getattr(bound, "__module__", "") == "crypten.common.rng":
                stray.append(f"{name}.{fn}")
    return stray
