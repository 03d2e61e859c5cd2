r"""Section 3 of the LOSSGRAD paper: exact line search on a quadratic form.

For :math:`F(x) = x^\top A x` with A symmetric positive definite, in the eigenbasis of A
:math:`F(x) = \sum_i \lambda_i x_i^2` and :math:`\nabla F(x) = 2(\lambda_i x_i)_i`. The step
along :math:`-\nabla F` that minimises F exactly is

.. math::
    t_0(x) = \frac{1}{2}\,\frac{\sum_i \lambda_i^2 x_i^2}{\sum_i \lambda_i^3 x_i^2},

and in two dimensions two such steps shrink :math:`\lVert x\rVert` at least by
:math:`((\lambda_1 - \lambda_2)/(\lambda_1 + \lambda_2))^2` (bound (4) of the paper).
Every function takes the eigenvalues and points in eigen-coordinates as float64 tensors (or
anything ``torch.as_tensor`` accepts) and is exact up to rounding.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "contraction_bound",
    "line_search_map",
    "optimal_step",
    "quadratic_value",
    "two_step_factor",
]


def _float64(value: object) -> Tensor:
    return torch.as_tensor(value, dtype=torch.float64)


def quadratic_value(eigenvalues: object, x: object) -> Tensor:
    r""":math:`F(x) = \sum_i \lambda_i x_i^2` (over the last dimension of ``x``)."""
    lam, x = _float64(eigenvalues), _float64(x)
    return (lam * x**2).sum(-1)


def optimal_step(eigenvalues: object, x: object) -> Tensor:
    r"""The exact minimiser :math:`t_0(x)` of :math:`t \mapsto F(x - t\nabla F(x))`.

    Args:
        eigenvalues: :math:`\lambda_i > 0`, shape (n,).
        x: a point in eigen-coordinates, shape (..., n), not the minimiser 0.
    """
    lam, x = _float64(eigenvalues), _float64(x)
    return 0.5 * (lam**2 * x**2).sum(-1) / (lam**3 * x**2).sum(-1)


def line_search_map(eigenvalues: object, x: object) -> Tensor:
    r"""One step of exact line search, :math:`g(x) = x - t_0(x)\nabla F(x)`.

    In two dimensions this equals the paper's closed form
    :math:`g(x) = \frac{\lambda_2 - \lambda_1}{\lambda_1^3 x_1^2 + \lambda_2^3 x_2^2}
    x_1 x_2 (\lambda_2^2 x_2, -\lambda_1^2 x_1)`.
    """
    lam, x = _float64(eigenvalues), _float64(x)
    t0 = optimal_step(lam, x).unsqueeze(-1)
    return x - t0 * 2 * lam * x


def two_step_factor(eigenvalues: object, x: object) -> Tensor:
    r"""The paper's :math:`K_x` with :math:`g^2(x) = K_x\,x` in two dimensions.

    .. math::
        K_x = \frac{(\lambda_2 - \lambda_1)^2 \lambda_1 \lambda_2}
        {(\lambda_1^2 + \lambda_2^2)\lambda_1\lambda_2 + \lambda_1^4 a_x + \lambda_2^4 / a_x},
        \qquad a_x = x_1^2 / x_2^2.

    Args:
        eigenvalues: :math:`(\lambda_1, \lambda_2)`.
        x: points of shape (..., 2) with both coordinates non-zero.
    """
    lam, x = _float64(eigenvalues), _float64(x)
    l1, l2 = lam[0], lam[1]
    a = x[..., 0] ** 2 / x[..., 1] ** 2
    return (l2 - l1) ** 2 * l1 * l2 / ((l1**2 + l2**2) * l1 * l2 + l1**4 * a + l2**4 / a)


def contraction_bound(eigenvalues: object, steps: int) -> Tensor:
    r"""The factor of bound (4) for ``steps`` = 2n line-search steps in two dimensions.

    .. math::
        \lVert g^{2n}(x)\rVert \le
        \left(\frac{\lambda_1 - \lambda_2}{\lambda_1 + \lambda_2}\right)^{2n} \lVert x\rVert

    Args:
        eigenvalues: :math:`(\lambda_1, \lambda_2)`, in either order.
        steps: the number of line-search steps (even; an odd count rounds down to 2n).
    """
    lam = _float64(eigenvalues)
    l1, l2 = lam.max(), lam.min()
    return ((l1 - l2) / (l1 + l2)) ** (2 * (steps // 2))
