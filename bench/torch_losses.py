"""dml's newer losses written in PyTorch from their published formulas and PyTorch Metric
Learning's definitions (shared/design/losses.md), independently of the C code. One definition
serves every caller, in any float type:
- tests/scripts/torch_loss_fixtures.py computes them in float64 for tests/test_losses_torch.c;
- bench/torch_recipe.py trains with them in float32, the PyTorch side of bench/parity.py and
  bench/losses.py.
Labels y may be a list or a tensor; m is an optional memory whose labels follow the batch's in y.
"""
import torch

NORM_EPS = 1e-12  # DML_NORM_EPS: l2 normalisation divides by max(|x|, eps)


def l2n(x):
    return x / x.norm(dim=1, keepdim=True).clamp_min(NORM_EPS)


# ---- Multi-Similarity and Circle (losses.md, "Losses to add"; PML's MultiSimilarityLoss with its
# MultiSimilarityMiner, and CircleLoss), on cosines of the batch against itself and an optional
# memory m whose labels follow the batch's in y ----
def similarity_masks(z, mem, y):
    """Cosines [B, B + K] and the positive and negative masks (a row's own column in neither)."""
    b = z.shape[0]
    refs = z if mem is None else torch.cat([z, mem])
    s = l2n(z) @ l2n(refs).T
    y = torch.as_tensor(y)
    same = y[:b, None] == y[None, :]
    own = torch.zeros_like(same)
    own[:, :b] = torch.eye(b, dtype=torch.bool)
    return s, same & ~own, ~same


def masked_lse(x, mask, add_one):
    """log(sum over the mask of exp(x)), with a 1 added inside when add_one."""
    x = x.masked_fill(~mask, float("-inf"))
    if add_one:
        x = torch.cat([x, x.new_zeros(x.shape[0], 1)], 1)
    return torch.logsumexp(x, dim=1)


def multi_similarity(z, mem, y, alpha, beta, base, miner, epsilon):
    s, pos, neg = similarity_masks(z, mem, y)
    both = pos.any(1) & neg.any(1)  # dml: a row lacking either adds 0 (counted in the mean)
    if miner:  # keep positives below the hardest negative + eps, negatives above the hardest positive - eps
        sd = s.detach()
        hardest_neg = sd.masked_fill(~neg, float("-inf")).max(1).values
        hardest_pos = sd.masked_fill(~pos, float("inf")).min(1).values
        pos = pos & (sd - epsilon < hardest_neg[:, None])
        neg = neg & (sd + epsilon > hardest_pos[:, None])
    per_row = masked_lse(-alpha * (s - base), pos, True) / alpha + masked_lse(beta * (s - base), neg, True) / beta
    return torch.where(both, per_row, torch.zeros_like(per_row)).mean()


def circle(z, mem, y, m, gamma):
    s, pos, neg = similarity_masks(z, mem, y)
    rows = pos.any(1) & neg.any(1)
    s, pos, neg = s[rows], pos[rows], neg[rows]
    if s.shape[0] == 0:
        return z.sum() * 0.0
    a_p = (1 + m - s.detach()).clamp_min(0.0)  # the weights carry no gradient
    a_n = (s.detach() + m).clamp_min(0.0)
    logit_p = -gamma * a_p * (s - (1 - m))
    logit_n = gamma * a_n * (s - m)
    return torch.nn.functional.softplus(masked_lse(logit_p, pos, False) + masked_lse(logit_n, neg, False)).mean()


def supcon(z, zp, y, temperature):
    """SupCon (Khosla et al. 2020, L_out) as PML's SupConLoss (AvgNonZeroReducer): every row of
    z, and of zp when given (row i's second view), an anchor; unlabelled, a row's views are its
    only positives (NT-Xent)."""
    b = z.shape[0]
    y = torch.as_tensor(y) if y is not None else torch.arange(b)
    e = z
    if zp is not None:
        e, y = torch.cat([z, zp]), torch.cat([y, y])
    n = e.shape[0]
    eye = torch.eye(n, dtype=torch.bool)
    same = y[:, None] == y[None, :]
    pos, neg = same & ~eye, ~same
    v = (l2n(e) @ l2n(e).T) / temperature
    if not pos.any() or not neg.any():
        return v.sum() * 0.0
    v = v.masked_fill(eye, float("-inf"))
    log_prob = v - torch.logsumexp(v, dim=1, keepdim=True)
    n_pos = pos.sum(1)
    per_anchor = -log_prob.masked_fill(~pos, 0.0).sum(1) / n_pos.clamp_min(1)
    keep = per_anchor > 0
    return per_anchor[keep].mean() if keep.any() else v.sum() * 0.0


def margin_softmax(z, w, y, classes, sub_centers, kind, margin, scale):
    """ArcFace / CosFace over class weights w [classes * sub_centers, D] (PML's ArcFaceLoss,
    CosFaceLoss, SubCenterArcFaceLoss): a class's cosine the largest of its sub-centres'; the
    true class's t becomes cos(acos(t) + m) or t - m; cross-entropy of scale * logits, mean."""
    cos = (l2n(z) @ l2n(w).T).view(-1, classes, sub_centers).max(dim=2).values
    y = torch.as_tensor(y)
    rows = torch.arange(len(y))
    t = cos[rows, y]
    moved = torch.cos(torch.acos(t.clamp(-1.0, 1.0)) + margin) if kind == "arcface" else t - margin
    onehot = torch.nn.functional.one_hot(y, classes).to(cos.dtype)
    logits = cos + onehot * (moved - t)[:, None]
    return torch.nn.functional.cross_entropy(scale * logits, y)


def proxy_anchor(z, proxies, y, margin, alpha):
    """Kim et al. 2020, PML's ProxyAnchorLoss: per proxy, log(1 + sum exp) over its positive rows
    of -alpha (cos - margin), averaged over the proxies with a positive in the batch, plus the same
    over its negative rows of alpha (cos + margin), averaged over every proxy."""
    cos = l2n(z) @ l2n(proxies).T
    c = proxies.shape[0]
    pos = torch.nn.functional.one_hot(torch.as_tensor(y), c).bool()
    one = cos.new_zeros(1, c)  # the log's 1: exp(0) in each log-sum-exp
    pos_term = torch.logsumexp(torch.cat([torch.where(pos, -alpha * (cos - margin), float("-inf")), one]), 0)
    neg_term = torch.logsumexp(torch.cat([torch.where(~pos, alpha * (cos + margin), float("-inf")), one]), 0)
    return pos_term.sum() / pos.any(0).sum() + neg_term.sum() / c
