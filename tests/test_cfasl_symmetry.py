"""CFASL's symmetry codebook, its regularisers and the composite symmetry (Jung, Jeong & Kim
2024): group-action algebra, hand-built zero/positive cases, exactness of the fast forms against
their definitions, and the switch pseudo-labels."""

from __future__ import annotations

import math

import pytest
import torch

from disentkit.models.symmetry import (
    PARALLEL_EPS,
    SymmetryCodebook,
    SymmetryPredictor,
    act,
    commutator_loss,
    commutator_loss_dense,
    composite_weights,
    orthogonal_loss,
    orthogonal_loss_dense,
    parallel_loss,
    parallel_loss_dense,
    reference_commutator_loss,
    sparsity_loss,
    switch_loss,
    switch_targets,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _diagonal_codebook(dim: int, sub: int, seed: int = 0) -> SymmetryCodebook:
    """Every element of section s is c * E_ss (E_ss: the matrix unit): they all commute."""
    book = SymmetryCodebook(dim, sub)
    scale = torch.randn(dim, sub, generator=_gen(seed), dtype=torch.float64)
    with torch.no_grad():
        elements = torch.zeros(dim, sub, dim, dim, dtype=torch.float64)
        idx = torch.arange(dim)
        elements[idx, :, idx, idx] = scale
        book.elements = torch.nn.Parameter(elements.reshape(dim * sub, dim, dim))
    return book


# ---- group action --------------------------------------------------------------------------
def test_group_action_is_a_homomorphism_on_commuting_elements():
    book = _diagonal_codebook(4, 3)
    weights = torch.rand(5, 4, 3, generator=_gen(1), dtype=torch.float64)
    composite = torch.linalg.matrix_exp(book.algebra(weights))  # exp(sum_k w_k g_k)
    singles = torch.linalg.matrix_exp(weights.reshape(5, -1, 1, 1) * book.elements)  # (5, K, D, D)
    product = singles[:, 0]
    for k in range(1, singles.shape[1]):
        product = product @ singles[:, k]
    torch.testing.assert_close(composite, product)
    # acting with the composite equals acting with each factor in turn
    z = torch.randn(5, 4, generator=_gen(2), dtype=torch.float64)
    step_by_step = z
    for k in range(singles.shape[1]):
        step_by_step = act(step_by_step, singles[:, k])
    torch.testing.assert_close(act(z, composite), step_by_step)


def test_composite_with_its_inverse_is_the_identity():
    torch.manual_seed(0)
    book = SymmetryCodebook(5, 4, init_std=0.3)
    weights = torch.rand(6, 5, 4, generator=_gen(3))
    algebra = book.algebra(weights)
    group, inverse = torch.linalg.matrix_exp(algebra), torch.linalg.matrix_exp(-algebra)
    eye = torch.eye(5).expand(6, 5, 5)
    torch.testing.assert_close(group @ inverse, eye, atol=1e-4, rtol=1e-4)
    z = torch.randn(6, 5, generator=_gen(4))
    torch.testing.assert_close(act(act(z, group), inverse), z, atol=1e-4, rtol=1e-4)


def test_codebook_init_is_truncated_normal_and_sections_are_section_major():
    torch.manual_seed(0)
    book = SymmetryCodebook(6, 16)
    values = book.elements.detach()
    assert values.shape == (96, 6, 6)
    assert values.abs().max() <= 2.0
    assert 0.8 < values.std().item() < 0.95  # std of N(0,1) truncated at +-2 is 0.88
    weights = torch.zeros(1, 6, 16)
    weights[0, 2, 5] = 1.0  # section 2, element 5 -> flat index 2 * 16 + 5
    torch.testing.assert_close(book.algebra(weights)[0], values[2 * 16 + 5])


def test_displacements_are_z_minus_z_exp_g():
    torch.manual_seed(0)
    book = SymmetryCodebook(3, 2, init_std=0.5)
    z = torch.randn(4, 3)
    delta = book.displacements(z)
    g = book.elements.detach()[1 * 2 + 1]
    expected = z - z @ torch.linalg.matrix_exp(g)
    torch.testing.assert_close(delta[1, 1].detach(), expected)


# ---- regularisers: zero when satisfied, positive otherwise -----------------------------------
def test_sparsity_zero_for_single_coordinate_moves_and_positive_otherwise():
    delta = torch.zeros(2, 3, 4, 5)
    delta[..., 2] = torch.randn(2, 3, 4, generator=_gen(4))  # every vector moves coordinate 2 only
    assert sparsity_loss(delta).item() == 0.0
    delta[0, 0, 0, 2], delta[0, 0, 0, 3] = 2.0, 1.0
    # one vector moves two coordinates: (sum - max)^2 = (4 + 1 - 4)^2 = 1, averaged over 2*3*4
    assert sparsity_loss(delta).item() == pytest.approx(1 / 24, rel=1e-6)


def test_parallel_zero_for_colinear_sections_and_positive_otherwise():
    dirs = torch.randn(3, 1, 1, 4, generator=_gen(5))
    scales = torch.randn(3, 5, 6, 1, generator=_gen(6))  # signs vary: cos = +-1 still counts
    colinear = dirs * scales
    assert parallel_loss(colinear).item() == pytest.approx(-math.log(1 + PARALLEL_EPS), abs=1e-6)
    random = torch.randn(3, 5, 6, 4, generator=_gen(7))
    assert parallel_loss(random).item() > 0.5


def test_parallel_loss_equals_its_definition_with_gradients():
    delta = torch.randn(3, 4, 5, 3, generator=_gen(8), dtype=torch.float64, requires_grad=True)
    fast, dense = parallel_loss(delta), parallel_loss_dense(delta)
    torch.testing.assert_close(fast, dense)
    g_fast, = torch.autograd.grad(fast, delta)
    g_dense, = torch.autograd.grad(dense, delta)
    torch.testing.assert_close(g_fast, g_dense)
    # hand-computed: one section, two vectors at 60 degrees -> mean over 4 pairs of -log(cos^2)
    pair = torch.tensor([[[[1.0, 0.0]], [[0.5, math.sqrt(3) / 2]]]])  # (1, 2, 1, 2)
    expected = (2 * -math.log(1 + PARALLEL_EPS) + 2 * -math.log(0.25 + PARALLEL_EPS)) / 4
    assert parallel_loss(pair).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("rows", [1, 3, 4, 5, 8, 64])
def test_parallel_loss_any_slab_height_equals_the_definition(monkeypatch, rows):
    """Slabs of 1 row (no products), odd heights, heights that do not divide P B (a ragged last
    slab) and one slab for everything: value and gradient equal the dense definition."""
    import disentkit.models.symmetry as sym

    monkeypatch.setattr(sym, "PARALLEL_ROWS", rows)
    delta = torch.randn(2, 6, 3, 4, generator=_gen(9), dtype=torch.float64, requires_grad=True)
    fast, dense = sym.parallel_loss(delta), sym.parallel_loss_dense(delta)
    torch.testing.assert_close(fast, dense, rtol=1e-12, atol=0)
    torch.testing.assert_close(torch.autograd.grad(fast, delta)[0],
                               torch.autograd.grad(dense, delta)[0], rtol=1e-10, atol=1e-13)
    # the no-gradient pass gives the same value
    torch.testing.assert_close(sym.parallel_loss(delta.detach()), fast.detach(), rtol=1e-14, atol=0)


def test_parallel_slab_height_per_device():
    from disentkit.models.symmetry import PARALLEL_ROWS, _slab_rows

    assert _slab_rows(10, 1024, torch.device("cpu")) == PARALLEL_ROWS
    assert _slab_rows(10, 7, torch.device("cpu")) == 7  # never taller than the matrix
    # accelerators: as tall as 2^24 cosines allow, a multiple of 4 (the whole matrix here)
    assert _slab_rows(10, 1024, torch.device("cuda")) == 1024
    rows = _slab_rows(10, 1 << 14, torch.device("cuda"))
    assert rows % 4 == 0 and 10 * rows * (1 << 14) <= 1 << 24 and rows >= PARALLEL_ROWS


def test_parallel_loss_float32_matches_the_definition_and_float64():
    """Float32 at the training size (D = 10, P = 16, B = 64, several slabs with products): the
    value agrees with the float64 definition to float32 precision and the gradient with the
    float32 definition (against float64 both differ by the same ~1e-4: near-orthogonal pairs
    make -log(cos^2 + 1e-9) ill-conditioned in cos, whatever the evaluation order)."""
    delta = torch.randn(10, 16, 64, 10, generator=_gen(13))
    fast32 = delta.clone().requires_grad_()
    dense32 = delta.clone().requires_grad_()
    dense64 = delta.double().requires_grad_()
    values = [parallel_loss(fast32), parallel_loss_dense(dense32), parallel_loss_dense(dense64)]
    for value in values:
        value.backward()
    torch.testing.assert_close(values[0].double(), values[2].detach(), rtol=2e-6, atol=0)
    scale = dense32.grad.abs().max().item()
    torch.testing.assert_close(fast32.grad, dense32.grad, rtol=0, atol=1e-5 * scale)
    error_fast = (fast32.grad.double() - dense64.grad).abs().max().item()
    error_dense = (dense32.grad.double() - dense64.grad).abs().max().item()
    assert error_fast <= 1.1 * error_dense + 1e-6 * scale


def test_log_sum_of_products_is_the_sum_of_logs_down_to_the_eps_floor():
    from disentkit.models.symmetry import _log_sum_of_products

    def scratch(values):
        return values.new_empty(values.numel() // 2), values.new_empty(values.numel() // 4)

    # every value at the floor 1e-9 (cos = 0): products of four are 1e-36, still a normal
    # float32, so the sum is exact up to rounding: 96 * log(1e-9)
    floor = torch.full((2, 8, 6), PARALLEL_EPS, dtype=torch.float32)
    assert _log_sum_of_products(floor, scratch(floor)).item() == pytest.approx(
        96 * math.log(PARALLEL_EPS), rel=1e-6)
    values = torch.rand(3, 12, 7, generator=_gen(14), dtype=torch.float64) + PARALLEL_EPS
    before, expected = values.clone(), values.log().sum()
    for rows in (12, 6, 5, 1):  # two levels, one level then odd, odd at once, a single row
        part = values[:, :rows]
        torch.testing.assert_close(_log_sum_of_products(part, scratch(part)), part.log().sum())
    torch.testing.assert_close(_log_sum_of_products(values, scratch(values)), expected)
    # a dtype whose smallest normal is above 1e-36 takes the plain log (no underflow)
    half = torch.full((1, 4, 2), 1e-3, dtype=torch.float16)
    assert _log_sum_of_products(half, scratch(half)).item() == pytest.approx(
        8 * math.log(1e-3), rel=1e-3)
    assert torch.equal(values, before)  # products go to the scratch buffers, not the input


def test_orthogonal_zero_for_orthogonal_sections_and_exact():
    # section s moves along basis vector e_s only: different sections are orthogonal
    delta = torch.zeros(3, 2, 4, 3)
    for s in range(3):
        delta[s, :, :, s] = torch.randn(2, 4, generator=_gen(s)) + 3.0
    choice = torch.tensor([1, 0, 1])
    assert orthogonal_loss(delta, choice).item() == pytest.approx(0.0, abs=1e-7)
    # all sections along the same direction: every cross-section cos^2 = 1
    same = torch.zeros(3, 2, 4, 3)
    same[..., 0] = 1.0
    assert orthogonal_loss(same, choice).item() == pytest.approx(1 - 1 / 3, rel=1e-6)
    rand = torch.randn(3, 2, 4, 3, generator=_gen(10), dtype=torch.float64, requires_grad=True)
    fast, dense = orthogonal_loss(rand, choice), orthogonal_loss_dense(rand, choice)
    torch.testing.assert_close(fast, dense)
    torch.testing.assert_close(torch.autograd.grad(fast, rand)[0],
                               torch.autograd.grad(dense, rand)[0])


def test_commutator_zero_on_commuting_codebook_and_exact_otherwise():
    book = _diagonal_codebook(4, 3)
    assert commutator_loss(book.elements).item() == pytest.approx(0.0, abs=1e-12)
    # hand-computed pair: [E_01, E_10] = E_00 - E_11 -> mean of squares over 2x2 = 2/4
    e01 = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    pair = torch.stack([e01, e01.T])
    assert commutator_loss(pair).item() == pytest.approx(0.5)
    elements = torch.randn(12, 4, 4, generator=_gen(11), dtype=torch.float64, requires_grad=True)
    fast, dense = commutator_loss(elements), commutator_loss_dense(elements)
    torch.testing.assert_close(fast, dense)
    torch.testing.assert_close(torch.autograd.grad(fast, elements)[0],
                               torch.autograd.grad(dense, elements)[0])


def test_reference_commutator_matches_the_loop_it_replaces():
    """The reference's construction, written as its loop, on a small codebook."""
    dim, sub = 3, 3
    num = dim * sub
    elements = torch.randn(num, dim, dim, generator=_gen(12), dtype=torch.float64)
    basis = elements.reshape(-1, dim * num)
    matrix = torch.matmul(elements, basis).view(-1, dim * num)
    swapped = matrix.clone()
    loss = 0.0
    for i in range(num // dim):
        for j in range(i + 1, num // dim):
            rows_i, rows_j = slice(i * dim, (i + 1) * dim), slice(j * dim, (j + 1) * dim)
            swapped[rows_j, rows_i] = matrix[rows_i, rows_j]
            swapped[rows_i, rows_j] = matrix[rows_j, rows_i]
            loss = loss + ((matrix - swapped) ** 2).mean()
    fast = reference_commutator_loss(elements, sub)
    torch.testing.assert_close(fast, loss)


# ---- composite symmetry of a pair ------------------------------------------------------------
def test_switch_pseudo_labels_on_a_hand_built_pair():
    z1 = torch.tensor([[0.0, 1.0, -2.0, 0.5]])
    z2 = torch.tensor([[0.1, 0.0, -2.0, 1.2]])
    targets = switch_targets(z1, z2, th=0.2)
    assert targets.tolist() == [[0, 1, 0, 1]]
    assert switch_targets(z1, z2, th=0.75).tolist() == [[0, 1, 0, 0]]
    # confident correct logits: ~0 loss; double softmax (reference) cannot go below log(1+e^-1)
    logits = torch.tensor([[[9.0, -9.0], [-9.0, 9.0], [9.0, -9.0], [-9.0, 9.0]]])
    assert switch_loss(logits, targets).item() < 1e-6
    assert switch_loss(logits, targets, double_softmax=True).item() == pytest.approx(
        4 * math.log(1 + math.exp(-1)), rel=1e-4)
    # sum over dimensions, divided by the number of pairs
    zero = torch.zeros(3, 4, 2)
    assert switch_loss(zero, torch.zeros(3, 4, dtype=torch.long)).item() == pytest.approx(
        4 * math.log(2))


def test_composite_weights_follow_switches_and_section_softmax():
    torch.manual_seed(0)
    switch_logits = torch.tensor([[[20.0, -20.0], [-20.0, 20.0]]])  # dim 0 off, dim 1 on
    factor_logits = torch.tensor([[[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]]])
    weights, switches, probs = composite_weights(switch_logits, factor_logits, tau=1e-4)
    assert switches.tolist() == [[0.0, 1.0]]
    torch.testing.assert_close(weights[0, 0], torch.zeros(3))
    torch.testing.assert_close(weights[0, 1], torch.softmax(factor_logits[0, 1], -1))
    torch.testing.assert_close(probs.sum(-1), torch.ones(1, 2))


def test_predictor_layout():
    head = SymmetryPredictor(latent_dim=3, sub_sec=4)
    assert head.linear.in_features == 12 and head.linear.out_features == 18
    switch_logits, factor_logits = head(torch.randn(5, 12))
    assert switch_logits.shape == (5, 3, 2) and factor_logits.shape == (5, 3, 4)


def test_bad_codebook_sizes_are_rejected():
    with pytest.raises(ValueError, match="sub_sec"):
        SymmetryCodebook(4, 0)
