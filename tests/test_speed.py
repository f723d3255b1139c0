"""What makes training steps faster keeps them correct: the CPU dropout (rate, scale, gradient), attention
with dropout (the same as scaled_dot_product_attention), the fused optimiser and the gradient norm it logs,
`trainer.compile`, and the precision chosen from what the device runs natively."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from actlab import devices
from actlab.config.compose import check_hardware
from actlab.errors import ActlabError
from actlab.policy.cpu_dropout import attention_with_dropout, cpu_dropout, keep_mask, relu_dropout_feedforward
from actlab.policy.runtime import resolve_precision
from actlab.policy.transformer import DecoderLayer, Dropout, EncoderLayer, feedforward
from actlab.training import trainer as train_module
from actlab.training.clipping import forget_grad_scale, total_norm
from tests.test_train import read_metrics, run


# ------------------------------------------------------------------------------------------------ dropout
@pytest.mark.parametrize("p", [0.1, 0.5])
def test_cpu_dropout_zeroes_a_fraction_p_and_scales_the_rest(p):
    torch.manual_seed(0)
    x = torch.ones(1000, 1000)
    y = cpu_dropout(x, p)
    zero = (y == 0).float().mean().item()
    assert abs(zero - p) < 0.002
    torch.testing.assert_close(y[y != 0], torch.full_like(y[y != 0], 1 / (1 - p)))
    assert abs(y.mean().item() - 1) < 0.005  # inverted dropout keeps the expectation


def test_cpu_dropout_is_seeded_by_torch_and_its_gradient_is_the_mask():
    x = torch.randn(7, 33, requires_grad=True)  # an odd number of elements: not a multiple of four
    torch.manual_seed(3)
    y = cpu_dropout(x, 0.1)
    torch.manual_seed(3)
    torch.testing.assert_close(cpu_dropout(x, 0.1), y)
    y.sum().backward()
    torch.testing.assert_close(x.grad, (y != 0).float() / 0.9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_residual_dropout_is_the_sum_with_dropout(dtype):
    """`Dropout.residual(x, y)` (one addcmul where the sum is fp32) is x + dropout(y) with the same draw, with
    the same gradients; a bf16 sum stays bf16."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5, 8, generator=g, dtype=dtype, requires_grad=True)
    y = torch.randn(6, 5, 8, generator=g, dtype=dtype, requires_grad=True)
    layer = Dropout(0.3).train()
    torch.manual_seed(4)
    ours = layer.residual(x, y)
    ours.backward(torch.ones_like(ours))
    grads = x.grad.clone(), y.grad.clone()
    x.grad = y.grad = None
    torch.manual_seed(4)
    reference = x + layer(y)
    reference.backward(torch.ones_like(reference))
    assert ours.dtype == dtype and 0 < (ours == x).float().mean() < 0.5  # dropped somewhere, not everywhere
    torch.testing.assert_close(ours, reference)
    torch.testing.assert_close(grads, (x.grad, y.grad))
    assert torch.equal(layer.eval().residual(x, y), x + y)


def test_residual_dropout_under_autocast_is_the_general_path():
    """Under bf16 autocast the residual stream is fp32 and the branch bf16: the branch is dropped in bf16 and
    then added, as `x + dropout(y)` rounds it (the addcmul would scale it in fp32)."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 32, generator=g), torch.randn(64, 32, generator=g).bfloat16()
    layer = Dropout(0.1).train()
    results = []
    for residual in (layer.residual, lambda x, y: x + layer(y)):
        torch.manual_seed(1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            results.append(residual(x, y))
    assert results[0].dtype == torch.float32 and 0.8 < (results[0] != x).float().mean() < 0.97
    assert torch.equal(*results)


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
def test_shortcuts_that_round_otherwise_are_taken_in_fp32_only(autocast, monkeypatch):
    """In fp32 a training step takes the fused feed-forward, the uniform queries' attention and the VAE's
    factored projections; under bf16 autocast none of them (they would round at other points than the general
    path, which the native-bf16 results were measured on), and the loss is the general path's."""
    from actlab.policy import act, transformer
    from tests.test_policy import make_policy

    taken = []

    def spy(owner, name, key):
        original = getattr(owner, name)
        monkeypatch.setattr(owner, name, lambda *args, **kwargs: taken.append(key) or original(*args, **kwargs))

    spy(transformer, "relu_dropout_feedforward", "feedforward")
    spy(transformer.Attention, "of_uniform_values", "uniform queries")
    spy(act.ACT, "vae_first_projections", "vae projections")
    policy = make_policy(("top",)).train()
    batch = training_batch(policy, real_actions=[10, 10, 10])
    torch.manual_seed(5)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = policy(batch)["loss"]
    assert torch.isfinite(loss)
    assert set(taken) == (set() if autocast else {"feedforward", "uniform queries", "vae projections"})


def test_dropout_module_is_the_identity_in_eval_mode_and_cpu_dropout_in_training():
    layer = Dropout(0.1)
    x = torch.randn(4, 5)
    assert torch.equal(layer.eval()(x), x)
    torch.manual_seed(0)
    expected = cpu_dropout(x, 0.1)
    torch.manual_seed(0)
    torch.testing.assert_close(layer.train()(x), expected)


def test_attention_with_dropout_is_sdpa_when_nothing_is_dropped():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, n, 8, generator=g) for n in (5, 7, 7))
    mask = torch.ones(2, 1, 1, 7, dtype=torch.bool)
    mask[0, ..., 5:] = False  # padded keys of the first sample
    ours = attention_with_dropout(q, k, v, mask, 1e-9)  # p rounds to 0 of 65536: every weight kept
    torch.testing.assert_close(ours, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


@pytest.mark.parametrize(
    "autocast,onednn",
    [(False, True), (False, False), (True, True)],
    ids=["fp32", "fp32-without-onednn", "bf16-autocast"],
)
def test_fused_feedforward_has_the_value_and_gradients_of_its_parts(autocast, onednn, monkeypatch):
    from actlab.policy import cpu_dropout as module

    if not onednn:
        monkeypatch.setattr(module, "_onednn_linear", lambda: None)
    elif module._onednn_linear() is None:
        pytest.skip("this PyTorch build has no oneDNN linear")
    torch.manual_seed(0)
    linear1, linear2 = torch.nn.Linear(16, 48), torch.nn.Linear(48, 16)
    h = torch.randn(3, 5, 16, requires_grad=True)
    grad = torch.randn(3, 5, 16)
    params = (h, linear1.weight, linear1.bias, linear2.weight, linear2.bias)
    results = []
    for fused in (False, True):
        torch.manual_seed(1)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            if fused:
                out = relu_dropout_feedforward(h, 0.3, linear1, linear2)
            else:
                hidden = torch.relu(linear1(h))
                out = linear2(torch.where(keep_mask(hidden.shape, 0.3), hidden / 0.7, 0.0))
        out.backward(grad)
        results.append([out.float(), *(t.grad.clone() for t in params)])
        assert [t.grad.dtype for t in params] == [torch.float32] * 5
        for t in params:
            t.grad = None
    tolerance = {"rtol": 2e-2, "atol": 2e-2} if autocast else {}  # bf16 rounds the scale at another point
    for ours, reference in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(ours, reference, **tolerance)
    with torch.no_grad():
        undropped = linear2(torch.relu(linear1(h)))
    assert not torch.allclose(results[1][0], undropped, atol=0.05)  # it dropped something


def test_keep_mask_is_seeded_by_torch_and_draws_new_bits_each_call():
    torch.manual_seed(4)
    first, second = keep_mask((1000, 100), 0.25), keep_mask((1000, 100), 0.25)
    torch.manual_seed(4)
    assert torch.equal(keep_mask((1000, 100), 0.25), first)
    assert not torch.equal(first, second)
    assert abs(first.float().mean().item() - 0.75) < 0.005
    assert abs((first & second).float().mean().item() - 0.75**2) < 0.005  # independent draws


def test_a_training_layer_fuses_its_feedforward_with_the_same_draws_and_gradients():
    from actlab.config.policy import ACTArchitecture

    layer = EncoderLayer(ACTArchitecture(dim_model=32, n_heads=4, dim_feedforward=64, dropout=0.2)).train()
    x = torch.randn(2, 7, 32)

    def plain(layer, h):
        return layer.linear2(layer.dropout(layer.activation(layer.linear1(h))))

    results = []
    for forward in (plain, feedforward):
        torch.manual_seed(5)
        out = layer.dropout2(forward(layer, x))
        out.square().sum().backward()
        results.append([out, *(p.grad.clone() for p in layer.parameters() if p.grad is not None)])
        layer.zero_grad()
    assert len(results[1]) == len(results[0]) > 4
    for ours, reference in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(ours, reference)


@pytest.mark.parametrize("pre_norm", [False, True], ids=["post-norm", "pre-norm"])
@pytest.mark.parametrize(
    "training,dropout", [(True, 0.2), (True, 0.0), (False, 0.2)], ids=["training", "training-p0", "eval"]
)
def test_the_first_decoder_layer_on_uniform_queries_is_the_general_layer(pre_norm, training, dropout):
    from actlab.config.policy import ACTArchitecture

    cfg = ACTArchitecture(dim_model=32, n_heads=4, dim_feedforward=64, dropout=dropout, pre_norm=pre_norm)
    layer = DecoderLayer(cfg).train(training)
    torch.nn.init.normal_(layer.self_attn.in_proj_bias)  # nonzero value bias: zero queries still attend to it
    g = torch.Generator().manual_seed(0)
    memory, memory_pos = torch.randn(3, 5, 32, generator=g), torch.randn(1, 5, 32, generator=g)
    pos = torch.randn(1, 6, 32, generator=g, requires_grad=True)
    for x in (torch.zeros(3, 6, 32), torch.randn(32, generator=g).expand(3, 6, 32)):  # ACT's zeros; any uniform x
        results = []
        for uniform in (False, True):
            torch.manual_seed(7)
            out = layer(x, memory, pos, memory_pos, uniform=uniform)
            out.square().sum().backward()
            grads = {n: p.grad.clone() for n, p in layer.named_parameters() if p.grad is not None}
            results.append((out, pos.grad.clone(), grads))
            layer.zero_grad()
            pos.grad = None
        (out, pos_grad, grads), (ours, our_pos_grad, our_grads) = results
        torch.testing.assert_close(ours, out)
        torch.testing.assert_close(our_pos_grad, pos_grad)
        assert our_grads.keys() == grads.keys() and any(k.startswith("self_attn.") for k in grads)
        # Sums in another order: equal up to fp32 rounding, relative to the largest gradient (the queries' and
        # keys' weights get none in eval, where every value is the same: the general layer's are rounding noise)
        scale = max(grad.abs().max().item() for grad in grads.values())
        for name, grad in grads.items():
            torch.testing.assert_close(our_grads[name], grad, rtol=1e-4, atol=1e-6 * scale, msg=name)


def training_batch(policy, real_actions: list[int]) -> dict[str, torch.Tensor]:
    """A training batch for `policy`: one sample per entry of `real_actions`, the number of its actions that are
    not padding."""
    from tests.test_policy import random_obs

    batch, chunk = len(real_actions), policy.config.chunk_size
    action_dim = policy.config.action_feature.shape[0]
    return {
        **random_obs(policy.config.input_features, batch=batch),
        "action": torch.rand(batch, chunk, action_dim, generator=torch.Generator().manual_seed(3)),
        "action_is_pad": torch.arange(chunk).expand(batch, -1) >= torch.tensor(real_actions)[:, None],
    }


def vae_batch(cfg) -> dict[str, torch.Tensor]:
    """Three samples of robot state and action chunk for the VAE encoder: with none, all but 3 and all but 1 of
    the chunk's actions padded."""
    from actlab.features import ACTION, ACTION_IS_PAD, OBS_STATE

    g = torch.Generator().manual_seed(0)
    return {
        OBS_STATE: torch.randn(3, cfg.robot_state_feature.shape[0], generator=g),
        ACTION: torch.randn(3, cfg.chunk_size, cfg.action_feature.shape[0], generator=g),
        ACTION_IS_PAD: torch.arange(cfg.chunk_size).expand(3, -1) >= torch.tensor([[cfg.chunk_size], [3], [1]]),
    }


@pytest.mark.parametrize("n_vae_encoder_layers", [1, 2])
def test_the_vae_encoders_first_projections_in_the_actions_rank_are_the_general_ones(n_vae_encoder_layers):
    from tests.test_policy import make_policy

    model = make_policy(("top",), n_vae_encoder_layers=n_vae_encoder_layers).model.train()
    batch = vae_batch(model.cfg)
    results = []
    for factored in (False, True):
        if not factored:
            model.vae_first_projections = lambda *args: None  # the general path: projections of every token
        torch.manual_seed(2)
        latent, mu, log_sigma_x2 = model.latent(batch, [])
        (latent.square().sum() + mu.sum() + log_sigma_x2.sum()).backward()
        results.append(
            ([latent, mu, log_sigma_x2], {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        )
        model.zero_grad()
        model.__dict__.pop("vae_first_projections", None)
    (outputs, grads), (our_outputs, our_grads) = results
    for ours, reference in zip(our_outputs, outputs, strict=True):
        torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-5)
    assert our_grads.keys() == grads.keys() and "vae_encoder_action_input_proj.weight" in grads
    scale = max(grad.abs().max().item() for grad in grads.values())
    for name, grad in grads.items():
        torch.testing.assert_close(our_grads[name], grad, rtol=1e-4, atol=1e-6 * scale, msg=name)


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
@pytest.mark.parametrize("pre_norm", [False, True], ids=["post-norm", "pre-norm"])
@pytest.mark.parametrize("n_vae_encoder_layers", [1, 3])
def test_the_vae_encoder_without_its_padded_tokens_is_the_general_one(
    n_vae_encoder_layers, pre_norm, autocast, monkeypatch
):
    from actlab.policy.packed_tokens import PackedTokens
    from tests.test_policy import make_policy

    model = make_policy(("top",), n_vae_encoder_layers=n_vae_encoder_layers, pre_norm=pre_norm, dropout=0.0)
    model = model.model.train()
    batch = vae_batch(model.cfg)
    worthwhile, decisions, results = PackedTokens.worthwhile, [], []
    for packed in (False, True):
        monkeypatch.setattr(
            PackedTokens, "worthwhile", lambda *a, on=packed: decisions.append(on and worthwhile(*a)) or decisions[-1]
        )
        torch.manual_seed(2)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            latent, mu, log_sigma_x2 = model.latent(batch, [])
        (latent.square().sum() + mu.sum() + log_sigma_x2.sum()).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append(([latent, mu, log_sigma_x2], grads))
        model.zero_grad()
    assert decisions == [False, True]
    (outputs, grads), (our_outputs, our_grads) = results
    rtol, atol = (2e-2, 2e-2) if autocast else (1e-4, 1e-5)  # bf16: products of other sizes, rounded
    for ours, reference in zip(our_outputs, outputs, strict=True):
        torch.testing.assert_close(ours, reference, rtol=rtol, atol=atol)
    assert our_grads.keys() == grads.keys() and any(k.startswith("vae_encoder.layers.0.linear1") for k in grads)
    scale = max(grad.abs().max().item() for grad in grads.values())
    for name, grad in grads.items():
        torch.testing.assert_close(our_grads[name], grad, rtol=rtol, atol=atol / 10 * scale, msg=name)


def test_packed_tokens_keep_the_real_tokens_and_put_them_back():
    from actlab.policy.packed_tokens import PackedTokens

    padded = torch.tensor([[False, False, False, True], [False, False, True, True]])
    layout = PackedTokens(padded, n_first=2)
    x = torch.arange(2 * 4 * 3, dtype=torch.float32).view(2, 4, 3)
    packed = layout.pack(x)
    assert torch.equal(packed, x[~padded])  # rows of the real tokens, sample by sample
    assert torch.equal(layout.to_batch(packed), torch.where(padded[..., None], 0.0, x))
    assert torch.equal(layout.first(packed, 2), x[:, :2])
    assert torch.equal(layout.pack(x[:1]), x[:1].expand(2, -1, -1)[~padded])  # a table broadcasts
    assert not PackedTokens.worthwhile(torch.zeros_like(padded), 1, x)  # nothing to skip
    assert not PackedTokens.worthwhile(padded, None, x)  # every token is an output
    assert PackedTokens.worthwhile(padded, 1, x)


# ------------------------------------------------------------------------------------------------ optimiser
@pytest.mark.parametrize("precision,fused", [("32-true", True), ("bf16-mixed", True), ("16-mixed", False)])
def test_adamw_is_fused_except_under_a_gradient_scaler(precision, fused):
    from actlab.config.schema import OptimizerConfig, SchedulerConfig
    from actlab.training.module import ACTLightningModule
    from tests.test_policy import make_policy

    module = ACTLightningModule(make_policy(("top",)), OptimizerConfig(), SchedulerConfig(), 10)
    module.trainer = SimpleNamespace(precision=precision)
    optimizer = module.configure_optimizers()["optimizer"]
    assert optimizer.defaults["fused"] is (True if fused else None)
    assert optimizer.defaults["foreach"] is (None if fused else True)


def test_logged_gradient_norm_is_the_norm_before_clipping(tmp_path, state_dataset, monkeypatch):
    """gradient_clip_val is tiny, so every step clips: a norm taken after clipping would be that value. The
    clipping reaches the optimiser Lightning steps: its fused update divides by clip_grad_norm_'s inverse."""
    scales, fused_adamw = [], torch._fused_adamw_

    def spy(*args, **kwargs):
        scales.append(kwargs["grad_scale"])
        return fused_adamw(*args, **kwargs)

    monkeypatch.setattr(torch, "_fused_adamw_", spy)
    run_dir = run(tmp_path, state_dataset, "trainer.gradient_clip_val=1e-6", "trainer.log_every_n_steps=1")
    norms = [float(r["train/grad_norm"]) for r in read_metrics(run_dir) if r.get("train/grad_norm")]
    assert len(norms) == 2 and all(n > 1e-3 for n in norms)
    per_step = len(scales) // len(norms)  # the fused update's calls per step (PyTorch groups the tensors)
    assert per_step >= 1 and len(scales) == per_step * len(norms)
    for i, norm in enumerate(norms):
        for scale in scales[i * per_step : (i + 1) * per_step]:
            assert scale is not None and scale.item() == pytest.approx((norm + 1e-6) / 1e-6, rel=1e-5)


def test_gradient_norm_is_logged_without_clipping(tmp_path, state_dataset):
    run_dir = run(tmp_path, state_dataset, "trainer.gradient_clip_val=0", "trainer.log_every_n_steps=1")
    assert len([r for r in read_metrics(run_dir) if r.get("train/grad_norm")]) == 2


@pytest.mark.parametrize("clip", [1e-3, 1e6], ids=["clips", "does-not-clip"])
@pytest.mark.parametrize("fused", [False, True], ids=["scaled-now", "scaled-in-the-update"])
def test_cpu_gradient_clipping_gives_clip_grad_norms_update(clip, fused):
    """The CPU clipping (per-tensor dot products; the coefficient applied by the fused AdamW) updates the
    weights and leaves the gradients as clip_grad_norm_ followed by the same optimiser does."""
    from actlab.config.schema import OptimizerConfig, SchedulerConfig
    from actlab.training.module import ACTLightningModule
    from tests.test_policy import make_policy

    module = ACTLightningModule(make_policy(("top",)), OptimizerConfig(), SchedulerConfig(), 10)
    module.trainer = SimpleNamespace(global_step=0, log_every_n_steps=1000)  # a step whose norm is not logged
    params = [p for p in module.policy.parameters() if p.requires_grad]
    start = [p.detach().clone() for p in params]
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(p.shape, generator=g) for p in params]

    def step(clipping) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        for p, weight, grad in zip(params, start, grads, strict=True):
            p.data.copy_(weight)
            p.grad = grad.clone()
        optimizer = torch.optim.AdamW(params, lr=0.1, fused=True) if fused else None
        if optimizer is not None:
            optimizer.register_step_post_hook(forget_grad_scale)
        clipping(optimizer)
        if optimizer is not None:
            optimizer.step()
            assert getattr(optimizer, "grad_scale", None) is None  # for this update only
        return [p.detach().clone() for p in params], [p.grad.clone() for p in params]

    ours = step(lambda optimizer: module.configure_gradient_clipping(optimizer, clip))
    reference = step(lambda optimizer: torch.nn.utils.clip_grad_norm_(params, clip, foreach=True))
    for mine, theirs in zip(ours[0] + ours[1], reference[0] + reference[1], strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)  # a few ulps: the norms sum in another order
    assert all(torch.equal(mine, grad) for mine, grad in zip(ours[1], grads, strict=True)) is (clip > 1)


def test_total_norm_is_torchs():
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(shape, generator=g) for shape in [(3, 4), (5,), (2, 3, 3, 3)]]
    grads.append(torch.randn(6, 4, generator=g).t())  # not contiguous
    torch.testing.assert_close(total_norm(grads), torch.nn.utils.get_total_norm(grads), rtol=1e-6, atol=0)
    assert total_norm([torch.full((4,), 1e20)]).isinf() and total_norm([]) == 0


# ------------------------------------------------------------------------------------------------ compile
@pytest.mark.slow
@pytest.mark.parametrize("precision", ["32-true", "auto"])  # fp32 on every CPU: the fused feed-forward's kernels
def test_compiled_training_keeps_the_weights_names_and_learns(tmp_path, state_dataset, precision):
    overrides = ["trainer.compile=true", "trainer.log_every_n_steps=1", f"trainer.precision={precision}"]
    run_dir = run(tmp_path, state_dataset, *overrides, steps=3)
    losses = [float(r["train/loss"]) for r in read_metrics(run_dir) if r.get("train/loss")]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    from actlab.policy import ACTPolicy

    # The folder loads strictly into an uncompiled policy: no `_orig_mod.` in the names.
    policy = ACTPolicy.from_pretrained(Path(run_dir) / "checkpoints" / "final")
    assert any(k.startswith("model.encoder.") for k in policy.state_dict())


@pytest.mark.filterwarnings("ignore:Dynamo detected a call to a `functools.lru_cache`")  # train.py's filter
@pytest.mark.parametrize("pre_norm", [False, True], ids=["post-norm", "pre-norm"])
def test_a_training_forward_traces_as_one_graph(pre_norm):
    """A graph break splits a compiled step into frames that dynamo recompiles per call signature: the bench's
    compiled run hit dynamo's recompile limit on one (`torch.result_type` in the residual dropout)."""
    from tests.test_policy import make_policy

    policy = make_policy(("top",), pre_norm=pre_norm).train()
    batch = training_batch(policy, real_actions=[10, 3, 7])
    torch._dynamo.reset()
    compiled = torch.compile(policy, backend="eager", fullgraph=True)  # fullgraph: a graph break raises
    loss = compiled(batch)["loss"]
    loss.backward()
    assert torch.isfinite(loss)


def test_compile_without_a_cpu_compiler_is_one_line(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    trainer = SimpleNamespace(accelerator="cpu", compile=True, get=lambda key: key == "compile")
    with pytest.raises(ActlabError, match=r"trainer.compile=true compiles C\+\+ kernels for the CPU but no C\+\+"):
        check_hardware(trainer)


# ------------------------------------------------------------------------------------------------ precision
@pytest.fixture
def cpu(monkeypatch):
    """A CPU with or without native bf16 (`cpu(True)`), its kernels not held to AVX2 (whatever the suite runs
    under, e.g. `ATEN_CPU_CAPABILITY=avx2 ... make test`), and the warn-once cache cleared."""
    devices.warn_emulated_bf16.cache_clear()

    def set_native(native: bool) -> None:
        monkeypatch.setattr(devices, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"} if native else {"avx2"}))
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        for key in devices.AVX2_EMULATION:
            monkeypatch.delenv(key, raising=False)

    yield set_native
    devices.warn_emulated_bf16.cache_clear()


@pytest.mark.parametrize("native,expected", [(True, "bf16-mixed"), (False, "32-true")])
def test_auto_training_precision_follows_the_cpu(cpu, native, expected):
    cpu(native)
    assert train_module.training_precision("auto", "cpu") == expected
    assert train_module.training_precision("auto", "auto") == expected


@pytest.mark.parametrize("native,expected", [(True, "bf16"), (False, "fp32")])
def test_auto_inference_precision_follows_the_cpu(cpu, native, expected):
    cpu(native)
    assert resolve_precision("auto", torch.device("cpu")) == expected


def test_explicit_bf16_on_a_cpu_without_it_warns_once_with_the_reason(cpu, caplog):
    cpu(False)
    with caplog.at_level(logging.WARNING, logger="actlab"):
        for _ in range(3):
            assert train_module.training_precision("bf16-mixed", "cpu") == "bf16-mixed"
            assert resolve_precision("bf16", torch.device("cpu")) == "bf16"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # one per setting, however often it is asked for
    assert all("emulated there, measured 4-32x slower than fp32" in w for w in warnings)
    assert "trainer.precision=bf16-mixed" in warnings[0] and "policy.precision=bf16" in warnings[1]


def test_bf16_on_a_cpu_with_it_does_not_warn(cpu, caplog):
    cpu(True)
    with caplog.at_level(logging.WARNING, logger="actlab"):
        train_module.training_precision("bf16-mixed", "cpu")
        resolve_precision("bf16", torch.device("cpu"))
    assert not caplog.records


@pytest.mark.parametrize(
    "environment, native",
    [
        ({}, True),
        ({"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}, False),
        ({"ATEN_CPU_CAPABILITY": "avx2"}, False),
        ({"ONEDNN_MAX_CPU_ISA": "AVX2_VNNI"}, False),
        ({"ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"}, True),
    ],
)
def test_kernels_held_to_avx2_count_as_a_cpu_without_native_bf16(cpu, monkeypatch, environment, native):
    """`python -m bench --emulate-avx2` on an AVX-512 BF16 CPU: `auto` takes fp32 there, as on an AVX2 CPU."""
    cpu(True)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    assert devices.cpu_has_native_bf16() is native
    assert train_module.training_precision("auto", "cpu") == ("bf16-mixed" if native else "32-true")
    assert (devices.emulation() is None) is native
    if not native:
        assert "the kernels are held to AVX2" in devices.describe_cpu()


def test_unknown_inference_precision_is_one_line():
    with pytest.raises(ActlabError, match=r"policy.precision='fp8' is not one of \['auto', 'fp32', 'bf16'\]"):
        resolve_precision("fp8", torch.device("cpu"))


def test_bench_emulate_avx2_holds_the_kernels_and_keeps_its_own_compile_cache():
    """PyTorch's torch.compile cache does not key on the AVX2 variables: kernels compiled without them gave
    NaN actions under them (test_compiled_policy_gives_the_same_actions, under `ATEN_CPU_CAPABILITY=avx2 ...`)."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    from bench.__main__ import avx2_environment

    env = avx2_environment({"PATH": "/bin"})
    assert {k: env[k] for k in devices.AVX2_EMULATION} == devices.AVX2_EMULATION and env["PATH"] == "/bin"
    assert env["TORCHINDUCTOR_CACHE_DIR"] == default_cache_dir() + "-avx2"
    assert avx2_environment({"TORCHINDUCTOR_CACHE_DIR": "/c"})["TORCHINDUCTOR_CACHE_DIR"] == "/c-avx2"
