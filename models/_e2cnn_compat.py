"""Run-time fixes that let e2cnn 0.2.3 (unmaintained) work with NumPy >= 2.3 and PyTorch 2.x.

Import this module before building any e2cnn layer (``models/__init__.py`` does). Each fix is
local to the e2cnn module that needs it; nothing in NumPy or PyTorch themselves is changed.
Checked with e2cnn 0.2.3, numpy 2.4.6 and torch 2.13.0; ``tests/test_e2cnn_compat.py`` shows
that each fix is still needed (the unpatched code fails) and that it works.

1. ``np.array(x, copy=False)`` raises on NumPy >= 2 when a copy is needed
   (``e2cnn.kernels.utils``): that module gets a numpy whose ``array(copy=False)`` is ``asarray``.
2. ``ndarray.tostring()`` is gone in NumPy >= 2.3; it is used by the ``__hash__`` of the
   kernel-basis solutions (``e2cnn.kernels.irreps_basis``): those hashes use ``tobytes()``.
3. ``np.float`` (removed in NumPy 1.24) in ``e2cnn.group.groups.o2group``: that module gets a
   numpy where ``float`` is the builtin float.
4. A ``uint8`` mask indexes a tensor when a basis expansion is built
   (``e2cnn.nn.modules.r2_conv.basisexpansion_singleblock``): PyTorch 2.x warns, and fails with
   "masked_fill_ only supports boolean masks" when one basis element is kept: that module gets
   a numpy and a torch whose ``uint8`` is ``bool``.

(``load_state_dict`` used to fail on the index buffers ``in_indices_``/``out_indices_``, which are
expanded views; no fix is needed now that those buffers are not part of state dicts.)

Besides these fixes, :func:`apply` makes the buffers that e2cnn computes from the architecture
alone (:data:`DERIVED_BUFFERS`: the sampled steerable basis, the index tables that place its
blocks, the bias change of basis) non-persistent for every e2cnn module, so state dicts and
checkpoints hold only what training changes (1.3 MB instead of 11 MB for the default encoder).
This is done on the classes, not on built models, because e2cnn shares basis modules between
layers and models through a process-wide cache.
"""

import types

import numpy as np
import torch

E2CNN_VERSION = "0.2.3"


class _ModuleWith(types.ModuleType):
    """A stand-in for a module (numpy, torch) that overrides a few attributes and delegates the rest."""

    def __init__(self, module, **overrides):
        super().__init__(module.__name__)
        self._module = module
        self.__dict__.update(overrides)

    def __getattr__(self, name):
        return getattr(self._module, name)


def _array_no_forced_copy(obj, *args, copy=True, **kwargs):
    if copy is False:
        return np.asarray(obj, *args, **kwargs)
    return np.array(obj, *args, copy=copy, **kwargs)


def _basis_solution_hash(self):
    def h(value):
        return hash(value.tobytes()) if isinstance(value, np.ndarray) else hash(value)

    return h(self.in_irrep) + h(self.out_irrep) + h(self.mu) + h(self.gamma)


def _fix_array_copy():
    from e2cnn.kernels import utils

    utils.np = _ModuleWith(np, array=_array_no_forced_copy)


def _fix_tostring():
    from e2cnn.kernels import irreps_basis

    for cls in (
        irreps_basis.R2FlipsSolution,
        irreps_basis.R2DiscreteRotationsSolution,
        irreps_basis.R2ContinuousRotationsSolution,
        irreps_basis.R2FlipsDiscreteRotationsSolution,
        irreps_basis.R2FlipsContinuousRotationsSolution,
    ):
        cls.__hash__ = _basis_solution_hash


def _fix_np_float():
    from e2cnn.group.groups import o2group

    o2group.np = _ModuleWith(np, float=float)


def _fix_uint8_mask():
    from e2cnn.nn.modules.r2_conv import basisexpansion_singleblock

    basisexpansion_singleblock.np = _ModuleWith(np, uint8=np.bool_)
    basisexpansion_singleblock.torch = _ModuleWith(torch, uint8=torch.bool)


# buffers computed from the architecture alone (and the e2cnn version, which apply() checks)
DERIVED_BUFFERS = ("sampled_basis", "in_indices_", "out_indices_", "bias_expansion")


def is_derived_buffer(key):
    """Whether a state-dict key (``a.b.name``) names one of :data:`DERIVED_BUFFERS`."""
    return key.rsplit(".", 1)[-1].startswith(DERIVED_BUFFERS)


def _register_buffer_unless_derived(self, name, tensor, persistent=True):
    torch.nn.Module.register_buffer(self, name, tensor, persistent=persistent and not is_derived_buffer(name))


def _keep_derived_buffers_out_of_state_dicts():
    from e2cnn.nn.modules.equivariant_module import EquivariantModule
    from e2cnn.nn.modules.r2_conv.basisexpansion import BasisExpansion

    for cls in (EquivariantModule, BasisExpansion):
        cls.register_buffer = _register_buffer_unless_derived


FIXES = {
    "array_copy": _fix_array_copy,
    "tostring": _fix_tostring,
    "np_float": _fix_np_float,
    "uint8_mask": _fix_uint8_mask,
}


def apply(skip=()):
    """Apply the fixes (once per process), except those named in ``skip`` (for tests).

    Returns
    -------
    module
        The ``e2cnn`` package.
    """
    import e2cnn

    if e2cnn.__version__ != E2CNN_VERSION:
        raise ImportError(
            f"models/_e2cnn_compat.py was written for e2cnn {E2CNN_VERSION}, found {e2cnn.__version__}"
        )
    if not getattr(e2cnn, "_o2vae_compat_applied", False):
        for name, fix in FIXES.items():
            if name not in skip:
                fix()
        _keep_derived_buffers_out_of_state_dicts()
        e2cnn._o2vae_compat_applied = True
    return e2cnn
