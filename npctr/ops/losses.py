r"""Binary log losses on probabilities, elementwise, as the frameworks write them.

``torch_bce`` is ``F.binary_cross_entropy``'s elementwise value, with its logs clamped at
``TORCH_LOG_FLOOR``, and ``torch_bce_grad`` its autograd backward (not the derivative of the
clamped logs):

.. math::
    \ell = (y - 1) \max(\log(1 - p), -100) - y \max(\log p, -100), \qquad
    \frac{\partial \ell}{\partial p} = \frac{p - y}{\max(p (1 - p), 10^{-12})}

``log_loss`` is the plain :math:`-y \log p - (1 - y) \log(1 - p)` with its exact derivative
(DeepCTR-TF's DIEN auxiliary loss: ``-log(p)`` and ``-log(1 - p)``, no epsilon, no clamp).
The training losses (``npctr.training.losses``) and DIEN's auxiliary loss
(``npctr.layers.auxiliary``) both use these.
"""
import numpy as np

#: ``F.binary_cross_entropy`` clamps each log at this value
TORCH_LOG_FLOOR = -100.0
#: torch's ``binary_cross_entropy_backward`` floor on ``p (1 - p)``
TORCH_BCE_EPSILON = 1e-12


def torch_bce(y, p):
    """``F.binary_cross_entropy``'s elementwise value (``p``'s shape)."""
    with np.errstate(divide="ignore"):
        return (y - 1) * np.maximum(np.log1p(-p), TORCH_LOG_FLOOR) - y * np.maximum(np.log(p), TORCH_LOG_FLOOR)


def torch_bce_grad(y, p):
    """``d torch_bce / d p`` as torch's autograd computes it."""
    return (p - y) / np.maximum(p * (1 - p), p.dtype.type(TORCH_BCE_EPSILON))


def log_loss(y, p):
    """``-y log p - (1 - y) log(1 - p)``, the plain logs (inf at a saturated wrong ``p``); a term
    whose label weight is 0 is absent, so a saturated right ``p`` gives 0, not ``0 * inf``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return -(np.where(y != 0, y * np.log(p), 0.0) + np.where(y != 1, (1 - y) * np.log(1 - p), 0.0))


def log_loss_grad(y, p):
    """``d log_loss / d p = -y / p + (1 - y) / (1 - p)`` (absent terms contribute 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(y != 0, -y / p, 0.0) + np.where(y != 1, (1 - y) / (1 - p), 0.0)
