"""LOSSGRAD, WNGrad and L4 as ``torch.optim`` optimizers.

``LossGrad`` and ``L4`` need the loss and take it through a closure
(``loss = opt.step(closure)``; their class attribute ``takes_loss_closure`` is True);
``WNGrad`` is driven like SGD. Plain references in the papers' notation are in
:mod:`lossgrad.reference`; the quadratic analysis of the LOSSGRAD paper in
:mod:`lossgrad.quadratic`.
"""

from lossgrad.l4 import L4
from lossgrad.lossgrad_optimizer import LossGrad
from lossgrad.wngrad import WNGrad

__all__ = ["L4", "LossGrad", "WNGrad"]
