"""Per-layer sizes for head-pruned models exported by geneprune (see geneprune's docs/export.md).

geneprune's compact Hugging Face export removes attention heads for real: each layer keeps its own number of query
and key/value heads, and config.json lists them:

    num_attention_heads_per_layer   query heads kept in each layer
    num_key_value_heads_per_layer   key/value heads kept in each layer
    kv_head_of_query_per_layer      (only when some layer keeps query heads unevenly across its KV groups) for each
                                    layer, the KV head each kept query head reads
    intermediate_size_per_layer     MLP width of each layer

`num_attention_heads`, `num_key_value_heads` and `intermediate_size` keep the unpruned values, so the stock classes
build every layer at full size and refuse the smaller tensors. The classes below are the stock ones (same config
class, same model_type, same forward); after the stock constructor they rebuild each layer's projections at that
layer's own size, so

    AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)

loads every tensor of the folder as it is (nothing missing, unexpected or resized) and computes the pruned model.
Without `trust_remote_code=True` the stock class refuses the folder with a size-mismatch error: loud, never
silently re-initialised weights.

How a layer is rebuilt, and why the stock forward still computes the right thing:
- the projections are plain nn.Linear (GPT-2: Conv1D) of the layer's sizes; the stock attention reshapes with
  `view(..., -1, head_dim)`, so the head count follows the tensor, and the attention's own `num_key_value_groups`
  (queries per KV head) is set per layer;
- a layer whose kept query heads do not split evenly across its kept KV heads reads K and V through a forward hook
  that repeats each KV head once per query head reading it (`kv_head_of_query_per_layer`), with groups of 1;
- a layer that keeps no query head contributes its output projection's bias alone (zero without one), which is
  what removing every head of the layer means;
- a layer whose MLP keeps no unit (`intermediate_size_per_layer` 0) has empty projections and contributes its
  down projection's bias alone (zero without one; a structured export zeroes the bias of a skipped block);
- Phi-3's fused qkv_proj / gate_up_proj are rebuilt at the layer's sizes, and its attention, which splits qkv at
  config.num_attention_heads, reads a per-layer view of the config; OPT's attention keeps num_heads per module.

Families: LLaMA (and llama2.c exports), Mistral, Qwen2, Qwen3, Gemma, Gemma 2, Phi-3 (3.5, 4-mini), OPT, GPT-2.

Written for transformers 4.57 and 5.x with PyTorch; nothing here is needed to run the model in geneprune or
transformers.js.
"""

import torch
from torch import nn
from transformers import (
    Gemma2ForCausalLM,
    GemmaForCausalLM,
    GPT2LMHeadModel,
    LlamaForCausalLM,
    MistralForCausalLM,
    OPTForCausalLM,
    Phi3ForCausalLM,
    Qwen2ForCausalLM,
    Qwen3ForCausalLM,
)
from transformers.pytorch_utils import Conv1D


def _per_layer(config, key, default):
    """config.<key> as one value per layer, or `default` for every layer when the key is absent."""
    layers = config.num_hidden_layers
    values = getattr(config, key, None)
    if values is None:
        return [default] * layers
    if not isinstance(values, (list, tuple)) or len(values) != layers:
        raise ValueError(f"config.json: {key} must list one value per layer ({layers})")
    return [int(v) for v in values]


def _linear(old, in_features, out_features):
    """An nn.Linear like `old` (bias, device, dtype) of another size."""
    return nn.Linear(
        in_features,
        out_features,
        bias=old.bias is not None,
        device=old.weight.device,
        dtype=old.weight.dtype,
    )


def _repeat_kv_heads(kv_of_query, head_dim):
    """A forward hook giving k_proj/v_proj one output head per query head: head i is KV head kv_of_query[i]."""
    index = {}

    def hook(module, inputs, output):
        idx = index.get(output.device)
        if idx is None:
            idx = index[output.device] = torch.tensor(kv_of_query, dtype=torch.long, device=output.device)
        heads = output.unflatten(-1, (-1, head_dim))
        return heads.index_select(-2, idx).flatten(-2)

    return hook


class _AttentionWithoutHeads(nn.Module):
    """A self-attention whose every head was removed: its output is the output projection's bias (or zero).

    The empty input and output projections (and a Qwen3's per-head q/k norms) are kept so the folder's tensors load
    by their usual names; the KV cache still gets this layer's (empty) entry, so the cache's length stays right
    for every layer.
    """

    def __init__(self, old, hidden_size, inputs=("q_proj", "k_proj", "v_proj"), out_name="o_proj"):
        super().__init__()
        self.config = getattr(old, "config", None)
        self.layer_idx = getattr(old, "layer_idx", None)
        self.head_dim = old.head_dim
        self.is_causal = True
        self.out_name = out_name
        for name in inputs:
            setattr(self, name, _linear(getattr(old, name), hidden_size, 0))
        setattr(self, out_name, _linear(getattr(old, out_name), 0, hidden_size))
        for name in ("q_norm", "k_norm"):
            if hasattr(old, name):
                setattr(self, name, getattr(old, name))

    def forward(self, hidden_states, *args, **kwargs):
        cache = kwargs.get("past_key_values", kwargs.get("past_key_value"))
        if cache is not None and self.layer_idx is not None:
            batch, seq = hidden_states.shape[:2]
            empty = hidden_states.new_zeros(batch, 0, seq, self.head_dim)
            cache.update(empty, empty, self.layer_idx)
        out = getattr(self, self.out_name)(hidden_states.new_zeros(*hidden_states.shape[:-1], 0))
        return out, None


class _LayerConfig:
    """The model's config as one layer sees it: its own head counts, every other setting read through live."""

    def __init__(self, config, **own):
        self.__dict__["_base"] = config
        self.__dict__["_own"] = own

    def __getattr__(self, name):
        if name.startswith("__") or name in ("_base", "_own"):
            raise AttributeError(name)
        own = self.__dict__["_own"]
        return own[name] if name in own else getattr(self.__dict__["_base"], name)

    def __setattr__(self, name, value):
        setattr(self.__dict__["_base"], name, value)


def _is_grouped(heads, kv_heads, kv_of_query):
    """Whether query heads read KV heads in the stock even grouping (head i reads KV head i // group)."""
    return (
        kv_heads > 0
        and heads % kv_heads == 0
        and list(kv_of_query) == [i // (heads // kv_heads) for i in range(heads)]
    )


def _resize_attention(layer, config, heads, kv_heads, kv_of_query, out_name="o_proj"):
    """Rebuilds layer.self_attn's q/k/v and output projections for `heads` query and `kv_heads` KV heads."""
    attn = layer.self_attn
    hidden = config.hidden_size
    d = attn.head_dim
    if heads == 0:
        layer.self_attn = _AttentionWithoutHeads(attn, hidden, out_name=out_name)
        return
    attn.q_proj = _linear(attn.q_proj, hidden, heads * d)
    attn.k_proj = _linear(attn.k_proj, hidden, kv_heads * d)
    attn.v_proj = _linear(attn.v_proj, hidden, kv_heads * d)
    setattr(attn, out_name, _linear(getattr(attn, out_name), heads * d, hidden))
    # Older releases keep the counts on the module too; the forward reads whichever it has.
    for name, value in (("num_heads", heads), ("num_key_value_heads", kv_heads)):
        if hasattr(attn, name):
            setattr(attn, name, value)
    if _is_grouped(heads, kv_heads, kv_of_query):
        attn.num_key_value_groups = heads // kv_heads
    else:
        # Uneven groups: K and V repeated per query head, each query head then its own group.
        attn.k_proj.register_forward_hook(_repeat_kv_heads(kv_of_query, d))
        attn.v_proj.register_forward_hook(_repeat_kv_heads(kv_of_query, d))
        attn.num_key_value_groups = 1
        if hasattr(attn, "num_key_value_heads"):
            attn.num_key_value_heads = heads


def _kv_maps(config, heads, kv_heads):
    """The KV head each kept query head reads, per layer: config's map, or the even grouping."""
    maps = getattr(config, "kv_head_of_query_per_layer", None)
    if maps is None:
        out = []
        for h, k in zip(heads, kv_heads):
            if k == 0 or h % k != 0:
                if h == 0:
                    out.append([])
                    continue
                raise ValueError("config.json: uneven query/KV head counts need kv_head_of_query_per_layer")
            out.append([i // (h // k) for i in range(h)])
        return out
    if len(maps) != len(heads) or any(len(m) != h for m, h in zip(maps, heads)):
        raise ValueError("config.json: kv_head_of_query_per_layer must list each layer's kept query heads")
    return [[int(i) for i in m] for m in maps]


def _resize_gated_mlp(mlp, hidden, size):
    """gate_proj/up_proj/down_proj (Phi-3: the fused gate_up_proj, gate then up) at `size`."""
    if mlp.down_proj.in_features == size:
        return
    if hasattr(mlp, "gate_up_proj"):
        mlp.gate_up_proj = _linear(mlp.gate_up_proj, hidden, 2 * size)
    else:
        mlp.gate_proj = _linear(mlp.gate_proj, hidden, size)
        mlp.up_proj = _linear(mlp.up_proj, hidden, size)
    mlp.down_proj = _linear(mlp.down_proj, size, hidden)
    if hasattr(mlp, "intermediate_size"):
        mlp.intermediate_size = size


def _split_qkv_hook(heads, kv_heads, kv_of_query, head_dim):
    """A forward hook on a fused qkv_proj ([q | k | v]) repeating K and V once per query head reading them."""
    q, kv = heads * head_dim, kv_heads * head_dim
    repeat = _repeat_kv_heads(kv_of_query, head_dim)

    def hook(module, inputs, output):
        k = repeat(module, inputs, output[..., q : q + kv])
        v = repeat(module, inputs, output[..., q + kv :])
        return torch.cat([output[..., :q], k, v], dim=-1)

    return hook


def _resize_fused_attention(layer, config, heads, kv_heads, kv_of_query):
    """Phi-3's attention (one qkv_proj, split by the config's counts) at `heads` query and `kv_heads` KV heads."""
    attn = layer.self_attn
    hidden = config.hidden_size
    d = attn.head_dim
    if heads == 0:
        layer.self_attn = _AttentionWithoutHeads(attn, hidden, inputs=("qkv_proj",))
        return
    attn.qkv_proj = _linear(attn.qkv_proj, hidden, (heads + 2 * kv_heads) * d)
    attn.o_proj = _linear(attn.o_proj, heads * d, hidden)
    if _is_grouped(heads, kv_heads, kv_of_query):
        attn.num_key_value_heads = kv_heads
        attn.num_key_value_groups = heads // kv_heads
    else:
        attn.qkv_proj.register_forward_hook(_split_qkv_hook(heads, kv_heads, kv_of_query, d))
        attn.num_key_value_heads = heads
        attn.num_key_value_groups = 1
    # The forward splits qkv at config.num_attention_heads: this layer's own view of the config.
    attn.config = _LayerConfig(config, num_attention_heads=heads, num_key_value_heads=attn.num_key_value_heads)


def _resize_rotary_decoder(model, config, resize_attention=_resize_attention):
    """Every layer of a LLaMA-style decoder (model.model.layers) at its own size."""
    layers = model.model.layers
    heads = _per_layer(config, "num_attention_heads_per_layer", config.num_attention_heads)
    kv_heads = _per_layer(config, "num_key_value_heads_per_layer", config.num_key_value_heads)
    sizes = _per_layer(config, "intermediate_size_per_layer", config.intermediate_size)
    full = (config.num_attention_heads, config.num_key_value_heads)
    maps = _kv_maps(config, heads, kv_heads)
    for i, layer in enumerate(layers):
        if (heads[i], kv_heads[i]) != full or getattr(config, "kv_head_of_query_per_layer", None) is not None:
            resize_attention(layer, config, heads[i], kv_heads[i], maps[i])
        _resize_gated_mlp(layer.mlp, config.hidden_size, sizes[i])


class GenepruneLlamaForCausalLM(LlamaForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        _resize_rotary_decoder(self, config)


class GenepruneMistralForCausalLM(MistralForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        _resize_rotary_decoder(self, config)


class GenepruneQwen2ForCausalLM(Qwen2ForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        _resize_rotary_decoder(self, config)


class GenepruneGemmaForCausalLM(GemmaForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        _resize_rotary_decoder(self, config)


class GenepruneGemma2ForCausalLM(Gemma2ForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        _resize_rotary_decoder(self, config)


class GenepruneQwen3ForCausalLM(Qwen3ForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        _resize_rotary_decoder(self, config)


class GeneprunePhi3ForCausalLM(Phi3ForCausalLM):
    """Phi-3 / Phi-3.5 / Phi-4-mini: fused qkv_proj and gate_up_proj, each at the layer's own size."""

    def __init__(self, config):
        super().__init__(config)
        _resize_rotary_decoder(self, config, _resize_fused_attention)


class GenepruneOPTForCausalLM(OPTForCausalLM):
    """OPT: multi-head attention (q/k/v/out_proj, num_heads on the module) and fc1/fc2 on each layer."""

    def __init__(self, config):
        super().__init__(config)
        hidden = config.hidden_size
        full = config.num_attention_heads
        heads = _per_layer(config, "num_attention_heads_per_layer", full)
        sizes = _per_layer(config, "intermediate_size_per_layer", config.ffn_dim)
        for i, layer in enumerate(self.model.decoder.layers):
            if heads[i] != full:
                _resize_attention(layer, config, heads[i], heads[i], list(range(heads[i])), out_name="out_proj")
            if layer.fc2.in_features != sizes[i]:
                layer.fc1 = _linear(layer.fc1, hidden, sizes[i])
                layer.fc2 = _linear(layer.fc2, sizes[i], hidden)


class _Conv1D(Conv1D):
    """GPT-2's Conv1D taking an input of zero features too (an MLP left without units: its c_proj adds its bias
    alone), which the stock forward's view(-1, 0) cannot reshape."""

    def forward(self, x):
        lead = x.shape[:-1]
        out = torch.addmm(self.bias, x.reshape(lead.numel(), x.shape[-1]), self.weight)
        return out.view(*lead, self.nf)


def _conv1d(old, n_in, n_out):
    """A GPT-2 Conv1D (weight stored [in, out]) like `old` (device, dtype), of another size."""
    new = _Conv1D(n_out, n_in)
    return new.to(device=old.weight.device, dtype=old.weight.dtype)


class GenepruneGPT2LMHeadModel(GPT2LMHeadModel):
    """GPT-2 with each layer's heads and MLP width from config.json.

    transformers 4.x also applies the folder's `pruned_heads` while it builds the model (5.x does not have it);
    either way the layers end at the sizes of `num_attention_heads_per_layer`, which is what the tensors hold.
    """

    def __init__(self, config):
        super().__init__(config)
        embed = config.hidden_size
        d = embed // config.num_attention_heads
        heads = _per_layer(config, "num_attention_heads_per_layer", config.num_attention_heads)
        inner = config.n_inner if config.n_inner is not None else 4 * embed
        sizes = _per_layer(config, "intermediate_size_per_layer", inner)
        for i, block in enumerate(self.transformer.h):
            attn = block.attn
            if attn.c_proj.weight.shape[0] != heads[i] * d:
                attn.c_attn = _conv1d(attn.c_attn, embed, 3 * heads[i] * d)
                attn.c_proj = _conv1d(attn.c_proj, heads[i] * d, embed)
                attn.num_heads = heads[i]
                attn.split_size = heads[i] * d
            mlp = block.mlp
            if mlp.c_proj.weight.shape[0] != sizes[i]:
                mlp.c_fc = _conv1d(mlp.c_fc, embed, sizes[i])
                mlp.c_proj = _conv1d(mlp.c_proj, sizes[i], embed)
