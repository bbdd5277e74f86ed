"""What the PyTorch references rwkv4.py (x040), rwkv6.py (x052/x060) and rwkv7.py (x070) share:
the layer/shape helpers, the orthogonal init draw, LayerNorm, Linear, token shift, the matrix
WKV state of x052/x060/x070, the per-token RNN loop, RWKV-LM's L2Wrap in its two forms, the
loss and the cosine schedule of v5/v6/v7. Each module imports these under its own names, so
rwkv7.shift, rwkv6.L2Wrap etc. are what they were. Written from NEXT-ARCH.md; no code copied
from other projects."""
import math

import torch
import torch.nn.functional as F

LN_EPS = 1e-5


def n_layer_of(params):
    n = 0
    while f"blocks.{n}.ln1.weight" in params:
        n += 1
    return n


def empty_state(n_layer, B, C, head_size=64, dtype=torch.float64):
    """The x052/x060/x070 state: per layer att_x [B,C], wkv [B,H,N,N] (value i, key j), ffn_x [B,C]."""
    H, N = C // head_size, head_size
    return [{"att_x": torch.zeros(B, C, dtype=dtype),
             "wkv": torch.zeros(B, H, N, N, dtype=dtype),
             "ffn_x": torch.zeros(B, C, dtype=dtype)} for _ in range(n_layer)]


def run_rnn(step, dims_of, p, tokens, state=None):
    """Runs step(p, token, state) -> (logits, state) over T; returns logits (B,T,V) and the
    final state (empty_state of dims_of(p) when state is None)."""
    L, C, H, N = dims_of(p)
    B, T = tokens.shape
    if state is None:
        state = empty_state(L, B, C, N, p["emb.weight"].dtype)
    out = []
    for t in range(T):
        lg, state = step(p, tokens[:, t], state)
        out.append(lg)
    return torch.stack(out, dim=1), state


def orthogonal(shape, gain, g):
    """Orthogonal matrix like torch.nn.init.orthogonal_ (QR of a normal matrix, sign-fixed by
    diag(R)), drawn from generator g in float64."""
    rows, cols = shape
    flat = torch.randn(rows, cols, generator=g, dtype=torch.float64)
    if rows < cols:
        flat = flat.t()
    q, r = torch.linalg.qr(flat)
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
    if rows < cols:
        q = q.t()
    return gain * q


def heads(x, H):
    B, T, C = x.shape
    return x.view(B, T, H, C // H)


def layer_norm(x, p, name):
    return F.layer_norm(x, (x.shape[-1],), p[name + ".weight"], p[name + ".bias"], LN_EPS)


def linear(x, W):
    return x @ W.t()


def shift(x, prev):
    """x: (B,T,C), prev: (B,C) -> (B,T,C) with out[:,0] = prev, out[:,t] = x[:,t-1]."""
    return torch.cat([prev.unsqueeze(1), x[:, :-1]], dim=1)


def ln_by_hand(x, w, b, eps):
    """LayerNorm over the last dimension written out (the RNN forms' independent check); also
    one head's GroupNorm when given that head's slice of ln_x."""
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def _l2wrap_grad(logits):
    """max_logit * 1e-4 / (B*T) at each row's argmax logit, zero elsewhere."""
    B, T = logits.shape[0], logits.shape[1]
    factor = 1e-4 / (B * T)
    mx, ids = torch.max(logits, dim=-1, keepdim=True)
    g = torch.zeros_like(logits)
    g.scatter_(-1, ids, mx * factor)
    return g


class L2Wrap(torch.autograd.Function):
    """RWKV-LM L2Wrap (v4, v5, v6): forward returns loss; backward passes grad_output to the loss
    and adds, at each row's argmax logit, max_logit * 1e-4 / (B*T) to the logit gradient (not
    scaled by grad_output; the goldens call it with grad_output == 1). logits: (B,T,V)."""

    @staticmethod
    def forward(ctx, loss, logits):
        ctx.save_for_backward(logits)
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        (logits,) = ctx.saved_tensors
        return grad_output, _l2wrap_grad(logits)


class L2WrapV7(L2Wrap):
    """RWKV-LM v7 L2Wrap: forward returns loss; backward passes grad_output to the loss and adds,
    at each row's argmax logit, grad_output * max_logit * 1e-4 / (B*T) to the logit gradient
    (the fixed form in LM7; identical to the original when grad_output == 1). logits: (B,T,V)."""

    @staticmethod
    def backward(ctx, grad_output):
        (logits,) = ctx.saved_tensors
        return grad_output, grad_output * _l2wrap_grad(logits)


def loss_with(wrap, logits, targets, l2wrap):
    """Mean cross-entropy over all B*T positions; logits (B,T,V), targets (B,T) int64; with
    l2wrap, passed through wrap (an L2Wrap class)."""
    V = logits.shape[-1]
    loss = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))
    if l2wrap:
        loss = wrap.apply(loss, logits)
    return loss


def lr_cosine(step, lr_init, lr_final, warmup_steps, total_steps):
    """RWKV-LM v5/v6/v7 schedule (trainer.py, cosine when my_exit_tokens is set, in steps here;
    optim's cosine_v7): progress = clamp((step - warmup)/(total - warmup), 0, 1),
    lr = lr_init*((0.5 + f/2) + (0.5 - f/2)*cos(pi*progress)), f = lr_final/lr_init, and during
    warmup lr *= 0.01 + 0.99*step/warmup. step counts from 0."""
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    progress = min(1.0, max(0.0, progress))
    f = lr_final / lr_init
    lr = lr_init * ((0.5 + f / 2) + (0.5 - f / 2) * math.cos(math.pi * progress))
    if step < warmup_steps:
        lr = lr * (0.01 + 0.99 * step / warmup_steps)
    return lr
