"""Pinsker transfer certificates: what fairness on the ideal target ``θ̃`` guarantees on ``θ`` (MATH §5).

:func:`certificate` turns a :class:`~jaxsteer.Solution` of :func:`~jaxsteer.nearest_ideal` into
bounds on how much the error and the fairness gaps of a classifier can change between the ideal
target ``θ̃`` (where its Bayes rules are exactly fair) and the original family ``θ``. Every bound is
a total-variation bound made computable by Pinsker's inequality; see :func:`certificate` for the
derivations.

Example:
    >>> import jaxsteer
    >>> from jaxsteer.certificates import certificate
    >>> fam = jaxsteer.GaussianFamily.univariate(priors=[[.3, .2], [.2, .3]], means=[[0., 1.], [2., 2.5]],
    ...                                          stds=[[1., 1.], [1., 2.]])    # k = m = 2, d = 1
    >>> cert = certificate(jaxsteer.nearest_ideal(fam))
    >>> round(float(cert.eo_bound), 3)   # ΔEO on θ of any rule exactly fair on θ̃ is at most this
    0.381
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import xlogy

from jaxsteer.solve import Solution

__all__ = ["Certificate", "certificate"]


class Certificate(NamedTuple):
    """Transfer bounds from the ideal target ``θ̃`` to the original family ``θ`` (a pytree).

    Every array has the solution's batch shape ``[...]`` in front. ``k`` classes, ``m`` groups.
    "Transfer" entries bound ``|rate on θ − rate on θ̃|`` for **any** (group-aware) classifier;
    "gap" entries bound the max − min over groups on ``θ`` of a rule that is **exactly fair on θ̃**
    (for instance any Bayes rule of ``θ̃``, which is ideal). For a rule that is not exactly fair on
    ``θ̃`` add its gap on ``θ̃``: ``gap_θ ≤ gap_θ̃ + bound``. A value ``≥ 1`` is vacuous.

    Attributes:
        kl: ``KL(θ̃ ‖ θ)`` in nats, ``[...]``.
        tv_bound: ``sqrt(kl / 2)`` ``[...]``: ``|err_θ(h) − err_θ̃(h)| ≤ tv_bound`` for any ``h`` and
            any loss with values in ``[0, 1]`` (scale by ``max C − min C`` for a cost matrix ``C``).
        tpr_transfer: ``[..., k, m]``, ``sqrt(K_ia / 2)`` with ``K_ia = subgroup_kl[..., i, a]``:
            bounds ``|P_θ(h = j | Y = i, A = a) − P_θ̃(h = j | Y = i, A = a)|`` for every ``j``, in
            particular the TPR of class ``i`` in group ``a``.
        fpr_transfer: ``[..., k, m]``, bound on ``|P_θ(h = j | Y ≠ j, A = a) − P_θ̃(…)|`` (one-vs-rest
            FPR of class ``j`` in group ``a``). For ``k = 2``: ``fpr_transfer[..., 1, a] =
            tpr_transfer[..., 0, a]``.
        group_transfer: ``[..., m]``, bound on ``|P_θ(h = j | A = a) − P_θ̃(h = j | A = a)|``.
        tpr_gap_bound: ``[..., k]``, per class ``i``: ``max_a − min_a`` of ``P_θ(h = i | Y = i, A = a)``
            (indeed of any entry of row ``i`` of the confusion matrix) is at most
            ``max_{a≠a'} (tpr_transfer[i, a] + tpr_transfer[i, a'])``.
        fpr_gap_bound: ``[..., k]``, the same for the one-vs-rest FPR of class ``j``.
        eo_bound: ``[...]``, equal opportunity. ``k = 2``: ``tpr_gap_bound[..., 1]`` (the TPR gap of
            the positive class 1). ``k > 2``: ``max_i tpr_gap_bound[..., i]`` (worst class; it also
            bounds every entry of the confusion-matrix gap, ``jaxsteer.bayes.bayes_rates_1d(...).eo_gap``).
        fpr_bound: ``[...]``. ``k = 2``: ``fpr_gap_bound[..., 1]`` (the FPR gap, from class 0);
            ``k > 2``: ``max_j fpr_gap_bound[..., j]``.
        equalized_odds_bound: ``max(eo_bound, fpr_bound)``: bounds
            :func:`jaxsteer.metrics.equalized_odds_difference` (``k = 2``) and the worst one-vs-rest
            TPR/FPR gap (``k > 2``).
        dp_bound: ``[...]``, ``max_{a≠a'} (group_transfer[a] + group_transfer[a'])``: bounds ΔDP,
            the gap of ``P(h = j | A = a)`` for every ``j``.
        rms_tpr_gap_bound: ``[...]``, ``sqrt(mean_i tpr_gap_bound_i²)``: bounds
            :func:`jaxsteer.metrics.rms_tpr_gap` of the population.
    """

    kl: jax.Array
    tv_bound: jax.Array
    tpr_transfer: jax.Array
    fpr_transfer: jax.Array
    group_transfer: jax.Array
    tpr_gap_bound: jax.Array
    fpr_gap_bound: jax.Array
    eo_bound: jax.Array
    fpr_bound: jax.Array
    equalized_odds_bound: jax.Array
    dp_bound: jax.Array
    rms_tpr_gap_bound: jax.Array

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(np.shape(self.kl))

    def summary(self) -> str:
        """A readable multi-line summary (for a batch: the worst case over the batch)."""
        k, m = np.shape(self.tpr_transfer)[-2:]
        batch = self.batch_shape

        def worst(x):
            return float(np.max(np.asarray(x))) if np.size(x) else float("nan")

        def fmt(x):
            return f"{worst(x):.4g}"

        head = f"Certificate (k={k} classes, m={m} groups"
        head += f", batch {batch}: worst case over the batch shown)" if batch else ")"
        lines = [
            head,
            f"  KL(θ̃ ‖ θ) = {fmt(self.kl)} nats",
            f"  any classifier h:  |err_θ(h) − err_θ̃(h)| ≤ TV ≤ {fmt(self.tv_bound)}  (0/1 loss)",
            "  a rule exactly fair on θ̃ (e.g. its Bayes rule), gaps on θ:",
        ]
        if k == 2:
            lines += [
                f"    equal opportunity   ΔEO ≤ {fmt(self.eo_bound)}",
                f"    false-positive gap  ΔFPR ≤ {fmt(self.fpr_bound)}",
                f"    equalized odds      ≤ {fmt(self.equalized_odds_bound)}",
            ]
        else:
            per_class = np.max(np.asarray(self.tpr_gap_bound).reshape(-1, k), axis=0)
            shown = ", ".join(f"{v:.3g}" for v in per_class[:8]) + (", …" if k > 8 else "")
            lines += [
                f"    per-class TPR gaps  ≤ [{shown}]",
                f"    worst-class TPR gap ≤ {fmt(self.eo_bound)}",
                f"    RMS TPR gap         ≤ {fmt(self.rms_tpr_gap_bound)}",
                f"    equalized odds (one-vs-rest) ≤ {fmt(self.equalized_odds_bound)}",
            ]
        lines.append(f"    demographic parity  ΔDP ≤ {fmt(self.dp_bound)}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _pinsker(kl):
    """``sqrt(KL / 2)``; rounding-level negative KL is read as zero."""
    return jnp.sqrt(jnp.maximum(kl, 0) / 2)


def _pair_max(t):
    """``max_{a ≠ a'} (t_a + t_a')`` over the last axis: the sum of the two largest (0 if ``m < 2``)."""
    if t.shape[-1] < 2:
        return jnp.zeros(t.shape[:-1], t.dtype)
    s = jnp.sort(t, axis=-1)
    return s[..., -1] + s[..., -2]


def _conditional_kl(p_t, p, K):
    """KL of the laws of ``(Y, X)`` restricted to a set of classes, ``[..., m]``.

    ``p_t``/``p`` ``[..., k, m]``: the class weights of the two laws within that set (zeros outside,
    each summing to one over the set), ``K [..., k, m]``: the class-conditional feature KLs. By the
    chain rule ``KL = Σ_i p̃_i ln(p̃_i / p_i) + Σ_i p̃_i K_i``.
    """
    ratio = jnp.where(p > 0, p, 1)
    return jnp.sum(xlogy(p_t, p_t) - xlogy(p_t, ratio) + p_t * K, axis=-2)


def certificate(solution) -> Certificate:
    """Pinsker certificates of a :class:`~jaxsteer.Solution` (MATH §5); jittable, batch-aware.

    Notation: ``θ`` the original family, ``θ̃ = solution.target`` the ideal one, both joint laws of
    ``(Y, A, X)`` with the same group marginals; ``q(i|a)`` base rates, ``f_ia`` the class-conditional
    feature laws, ``K_ia = KL(f̃_ia ‖ f_ia) = solution.subgroup_kl[..., i, a]`` and
    ``KL = KL(θ̃ ‖ θ) = solution.kl``. A classifier is any measurable, possibly randomised,
    ``h(x, a) ∈ {0, …, k−1}``. Two facts do all the work:

    * **Data processing for TV.** For laws ``P, Q`` and any event ``E`` (in particular
      ``{h(X, a) = j}``, or the loss of a fixed ``h``, which is a function of ``(Y, A, X)``),
      ``|P(E) − Q(E)| ≤ TV(P, Q)`` and more generally ``|E_P g − E_Q g| ≤ TV(P, Q)`` for ``g`` with
      values in ``[0, 1]``. Marginalising or conditioning both laws on the same variable can only
      reduce what they disagree on.
    * **Pinsker.** ``TV(P, Q) ≤ sqrt(KL(P ‖ Q) / 2)`` (in either direction; here ``KL(θ̃ ‖ θ)``).

    The bounds:

    1. **Error** (any ``h``): ``err(h) = E[ℓ(Y, h(X, A))]`` with ``ℓ ∈ [0, 1]`` is the expectation of
       a ``[0, 1]``-valued function of ``(Y, A, X)``, so
       ``|err_θ(h) − err_θ̃(h)| ≤ TV(θ, θ̃) ≤ sqrt(KL / 2) = tv_bound``.
       (For a cost matrix ``C`` multiply by ``max C − min C``.)
    2. **Per-subgroup rates** (any ``h``): ``P(h = j | Y = i, A = a) = ∫ 1{h(x, a) = j} f_ia(x) dx``
       is the probability of one event under the class-conditional law ``f_ia`` (resp. ``f̃_ia``), so
       ``|TPR_ia(θ) − TPR_ia(θ̃)| ≤ TV(f_ia, f̃_ia) ≤ sqrt(K_ia / 2) = tpr_transfer[i, a]`` — and the
       same for every entry ``j`` of row ``i``.
    3. **One-vs-rest FPR** (any ``h``): ``P(h = j | Y ≠ j, A = a)`` is an event's probability under
       the law of ``(Y, X)`` given ``Y ≠ j, A = a``: class weights ``r_i = q(i|a) / (1 − q(j|a))``
       (``i ≠ j``) and features ``f_ia``. Its KL is, by the chain rule,
       ``Σ_{i≠j} r̃_i ln(r̃_i / r_i) + Σ_{i≠j} r̃_i K_ia`` and Pinsker gives ``fpr_transfer[j, a]``.
       For ``k = 2`` and ``j = 1`` this is ``sqrt(K_0a / 2)``.
    4. **Positive rates** (any ``h``): ``P(h = j | A = a)`` under the law of ``(Y, X)`` given
       ``A = a``, of KL ``KL_a = Σ_i q̃(i|a) ln(q̃(i|a) / q(i|a)) + Σ_i q̃(i|a) K_ia`` (so that
       ``Σ_a p_a KL_a = KL``): ``group_transfer[a] = sqrt(KL_a / 2)``.
    5. **Gaps of a rule exactly fair on θ̃.** If a rate ``r_a`` is equal across groups on ``θ̃``
       (``r_a(θ̃) = r``) and ``|r_a(θ) − r_a(θ̃)| ≤ t_a``, then by the triangle inequality
       ``|r_a(θ) − r_a'(θ)| ≤ t_a + t_a'``, so ``max_a r_a(θ) − min_a r_a(θ) ≤ max_{a≠a'} (t_a + t_a')``
       — the sum of the two largest ``t_a``. This gives

       * ``tpr_gap_bound[i]`` from (2): needs row ``i`` of the confusion matrix equal across groups
         on ``θ̃`` (equalized odds). For ``k = 2``: ``ΔEO_θ ≤ max_{a≠a'} sqrt(K_1a/2) + sqrt(K_1a'/2)``
         (``eo_bound``), and the FPR gap ``≤ max_{a≠a'} sqrt(K_0a/2) + sqrt(K_0a'/2)``
         (``fpr_bound``; ``P(h=1|Y=0,A=a)`` is an entry of row 0); equalized odds is their max;
       * ``fpr_gap_bound[j]`` from (3): needs the one-vs-rest FPR equal across groups on ``θ̃``, which
         holds for an equalized-odds rule on ``θ̃`` because its base rates are equal across groups
         (``θ̃`` is ideal), so ``Σ_{i≠j} q̃(i|a) P̃(h=j|i,a) / (1 − q̃(j|a))`` does not depend on ``a``;
       * ``dp_bound`` from (4): needs demographic parity on ``θ̃``;
       * ``rms_tpr_gap_bound``: ``gap_i ≤ tpr_gap_bound[i]`` for every class, hence for the RMS.

       Every Bayes rule of the ideal ``θ̃`` satisfies all three fairness conditions exactly (MATH §2),
       so all gap bounds apply to it when it is deployed on ``θ``. Groups are compared pairwise, so the
       affirmative reference group (``K_{i,ref} = 0``) enters with ``t = 0``.

    The bounds are about the populations ``θ`` and ``θ̃``; gaps measured on a finite sample carry
    sampling error in addition.

    Args:
        solution: a :class:`~jaxsteer.Solution` from :func:`~jaxsteer.nearest_ideal`, any batch axes.

    Returns:
        A :class:`Certificate` whose arrays have ``solution.kl.shape`` in front.

    Raises:
        TypeError: if ``solution`` is not a ``Solution``.

    Example:
        >>> from jaxsteer import GaussianFamily, nearest_ideal
        >>> from jaxsteer.certificates import certificate
        >>> fam = GaussianFamily.univariate(priors=[[.3, .2], [.2, .3]],
        ...                                 means=[[0., 1.], [2., 2.5]], stds=[[1., 1.], [1., 2.]])
        >>> cert = certificate(nearest_ideal(fam))
        >>> print(cert)
        Certificate (k=2 classes, m=2 groups)
          KL(θ̃ ‖ θ) = 0.1037 nats
          any classifier h:  |err_θ(h) − err_θ̃(h)| ≤ TV ≤ 0.2277  (0/1 loss)
          a rule exactly fair on θ̃ (e.g. its Bayes rule), gaps on θ:
            equal opportunity   ΔEO ≤ 0.381
            false-positive gap  ΔFPR ≤ 0.09231
            equalized odds      ≤ 0.381
            demographic parity  ΔDP ≤ 0.3221
        >>> round(float(cert.eo_bound), 3), round(float(cert.tv_bound), 4)
        (0.381, 0.2277)
    """
    if not isinstance(solution, Solution):
        raise TypeError(f"certificate: expected a jaxsteer Solution; got {type(solution).__name__}.")
    K = solution.subgroup_kl  # [..., k, m]
    k = K.shape[-2]
    q_t = solution.target.priors  # [..., k, m]
    q = q_t / solution.weights  # the original priors (weights = q̃ / q > 0)
    base_t = q_t / jnp.sum(q_t, axis=-2, keepdims=True)
    base = q / jnp.sum(q, axis=-2, keepdims=True)

    tpr_transfer = _pinsker(K)
    group_transfer = _pinsker(_conditional_kl(base_t, base, K))  # [..., m]

    fpr = []
    for j in range(k):
        keep = (jnp.arange(k) != j)[:, None]  # [k, 1]
        r_t = jnp.where(keep, base_t, 0)
        r = jnp.where(keep, base, 0)
        r_t = r_t / jnp.sum(r_t, axis=-2, keepdims=True)
        r = r / jnp.sum(r, axis=-2, keepdims=True)
        fpr.append(_pinsker(_conditional_kl(r_t, r, K)))
    fpr_transfer = jnp.stack(fpr, axis=-2)  # [..., k, m]

    tpr_gap_bound = _pair_max(tpr_transfer)  # [..., k]
    fpr_gap_bound = _pair_max(fpr_transfer)
    if k == 2:
        eo_bound, fpr_bound = tpr_gap_bound[..., 1], fpr_gap_bound[..., 1]
    else:
        eo_bound, fpr_bound = jnp.max(tpr_gap_bound, axis=-1), jnp.max(fpr_gap_bound, axis=-1)
    return Certificate(
        kl=solution.kl,
        tv_bound=_pinsker(solution.kl),
        tpr_transfer=tpr_transfer,
        fpr_transfer=fpr_transfer,
        group_transfer=group_transfer,
        tpr_gap_bound=tpr_gap_bound,
        fpr_gap_bound=fpr_gap_bound,
        eo_bound=eo_bound,
        fpr_bound=fpr_bound,
        equalized_odds_bound=jnp.maximum(eo_bound, fpr_bound),
        dp_bound=_pair_max(group_transfer),
        rms_tpr_gap_bound=jnp.sqrt(jnp.mean(tpr_gap_bound**2, axis=-1)),
    )
