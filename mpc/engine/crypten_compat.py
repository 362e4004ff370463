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
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable
from typing import Any

import torch

from mpc.errors import EngineError

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
        stub.registry = None  # type: ignore[attr-defined]
        sys.modules[name] = stub
    import crypten

    if crypten.__version__ != CRYPTEN_VERSION:
        raise EngineError(
            f"this project is built and tested against crypten {CRYPTEN_VERSION}, "
            f"found {crypten.__version__}; install it with `make install`"
        )
    _crypten = crypten
    return crypten


class StreamSource:
    """Where the patched rng functions find their streams (set per job by the session)."""

    local: Any = None  # the party's private SequentialStream


def _stream_for(generator: Any, device: Any) -> Any:
    from mpc.engine.rng import SequentialStream

    if device is not None and torch.device(device).type != "cpu":
        raise EngineError("only CPU tensors are supported")
    if generator is None:
        generator = StreamSource.local
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


def _size(size: Any) -> tuple[int, ...]:
    if isinstance(size, int):
        return (size,)
    return tuple(int(d) for d in size)


def install(communicator_cls: type, provider: Any, setup_prng: Callable[[], None],
            allow_builtin_providers: bool = False) -> None:
    """Point CrypTen at our communicator, provider and randomness (idempotent)."""
    global _installed
    crypten = load_crypten()
    import crypten.communicator as comm
    import crypten.mpc as cmpc

    comm.DistributedCommunicator = communicator_cls
    for module_name in RNG_BINDINGS:
        module = importlib.import_module(module_name)
        for fn in _RNG_FUNCTIONS:
            if hasattr(module, fn):
                setattr(module, fn, globals()[fn])
    crypten._setup_prng = setup_prng
    registry = cmpc.__dict__["__SUPPORTED_PROVIDERS"]
    registry[PROVIDER_NAME] = provider

    def get_default_provider() -> Any:
        name = crypten.cfg.mpc.provider
        if name != PROVIDER_NAME and not allow_builtin_providers:
            raise EngineError(
                f"CrypTen's {name} provider is refused: correlated randomness comes from the "
                "dealer (TrustedFirstParty would let party 0 learn every triple)"
            )
        return registry[name]

    cmpc.get_default_provider = get_default_provider
    crypten.cfg.mpc.provider = PROVIDER_NAME
    _installed = True


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
