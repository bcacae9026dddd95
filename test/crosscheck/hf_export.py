"""Loads the folders test/crosscheck/hf-export.ts wrote with Python transformers and compares their outputs with
geneprune's (see that file). Prints one line per case and writes a JSON summary; exits 1 when a folder that must
load (padded and dense layouts with the stock class; compact decoders, which ship modeling_geneprune.py, with
trust_remote_code=True) fails to load, loads with missing/unexpected/mismatched tensors, or differs.

    python3 test/crosscheck/hf_export.py tmp/crosscheck [--device cpu|cuda] [--json FILE] [--only NAME-PART]
"""

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import traceback

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

TOLERANCE = 1e-4


def load(case, folder, device):
    cls = AutoModelForCausalLM if case["task"] in ("causal-lm", "perplexity") else AutoModelForSequenceClassification
    remote = case.get("remoteCode", False)
    # Older transformers name the dtype argument torch_dtype (4.57 reads both).
    dtype_arg = "dtype" if tuple(int(x) for x in transformers.__version__.split(".")[:2]) >= (4, 56) else "torch_dtype"
    model, info = cls.from_pretrained(
        folder,
        attn_implementation="eager",
        output_loading_info=True,
        trust_remote_code=remote,
        **{dtype_arg: torch.float32},
    )
    problems = {k: v for k, v in info.items() if v and k != "error_msgs"}
    if info.get("error_msgs"):
        problems["error_msgs"] = info["error_msgs"]
    # A remote-code folder must have been built by its geneprune class, any other by transformers' own.
    module = type(model).__module__
    if remote != (not module.startswith("transformers.")):
        problems["class"] = f"{module}.{type(model).__name__}"
    return model.to(device).eval(), problems


def compare_outputs(case, model, device):
    ids = torch.tensor(case["ids"], dtype=torch.long, device=device)
    kwargs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if case["task"] == "seq-cls" and case["family"] == "bert":
        kwargs["token_type_ids"] = torch.zeros_like(ids)
    with torch.no_grad():
        logits = model(**kwargs).logits.float().cpu()
    expected = torch.tensor(case["expected"], dtype=torch.float32).reshape(case["shape"])
    if list(logits.shape) != list(expected.shape):
        return {"ok": False, "detail": f"shape {list(logits.shape)} vs geneprune {list(expected.shape)}"}
    diff = (logits - expected).abs().max().item()
    scale = max(1.0, expected.abs().max().item())
    result = {"ok": diff / scale <= TOLERANCE, "maxAbsDiff": diff, "scale": scale}
    if case["task"] == "causal-lm":
        # The KV cache: all tokens but the last, then the last one from the cache, must give the same last logits.
        with torch.no_grad():
            first = model(input_ids=ids[:, :-1], attention_mask=torch.ones_like(ids[:, :-1]), use_cache=True)
            step = model(
                input_ids=ids[:, -1:],
                attention_mask=torch.ones_like(ids),
                past_key_values=first.past_key_values,
                use_cache=True,
            )
        cached = (step.logits[:, -1].float().cpu() - expected[:, -1]).abs().max().item()
        result["cachedStepMaxAbsDiff"] = cached
        result["ok"] = result["ok"] and cached / scale <= TOLERANCE
    return result


def _mlp_units(model, layer):
    """(module holding the MLP, its width) for a geneprune remote-code model."""
    if hasattr(model, "transformer"):  # GPT-2: Conv1D weights are [in, out]
        mlp = model.transformer.h[layer].mlp
        return mlp, mlp.c_proj.weight.shape[0]
    if hasattr(model.model, "decoder"):  # OPT: fc1/fc2 on the layer
        block = model.model.decoder.layers[layer]
        return block, block.fc2.in_features
    mlp = model.model.layers[layer].mlp
    return mlp, mlp.down_proj.in_features


def _rows(linear, keep):
    """`linear` keeping only the output rows `keep`."""
    linear.weight = torch.nn.Parameter(linear.weight[keep, :])
    linear.out_features = len(keep)
    if linear.bias is not None:
        linear.bias = torch.nn.Parameter(linear.bias[keep])


def mlp_per_layer(case, folder, device, scratch):
    """modeling_geneprune.py's intermediate_size_per_layer, which geneprune cannot write yet: the folder's model
    with every other MLP unit of its last layer removed (weights sliced, the width listed per layer), saved and
    loaded again with trust_remote_code=True, must equal the model with those units' output weights zeroed."""
    kwargs = {"trust_remote_code": True, "attn_implementation": "eager"}
    sliced = AutoModelForCausalLM.from_pretrained(folder, **kwargs).eval()
    zeroed = AutoModelForCausalLM.from_pretrained(folder, **kwargs).eval()
    layer = sliced.config.num_hidden_layers - 1
    mlp, width = _mlp_units(sliced, layer)
    keep = torch.arange(0, width, 2)
    drop = torch.arange(1, width, 2)
    zmlp, _ = _mlp_units(zeroed, layer)
    with torch.no_grad():
        if hasattr(sliced, "transformer"):
            zmlp.c_proj.weight[drop, :] = 0
            fc, proj = mlp.c_fc, mlp.c_proj
            fc.weight, fc.bias = torch.nn.Parameter(fc.weight[:, keep]), torch.nn.Parameter(fc.bias[keep])
            fc.nf = len(keep)
            proj.weight = torch.nn.Parameter(proj.weight[keep, :])
        elif hasattr(mlp, "fc1"):
            zmlp.fc2.weight[:, drop] = 0
            _rows(mlp.fc1, keep)
            mlp.fc2.weight = torch.nn.Parameter(mlp.fc2.weight[:, keep])
            mlp.fc2.in_features = len(keep)
        else:
            zmlp.down_proj.weight[:, drop] = 0
            if hasattr(mlp, "gate_up_proj"):  # Phi-3: gate rows, then up rows
                _rows(mlp.gate_up_proj, torch.cat([keep, keep + width]))
            else:
                _rows(mlp.gate_proj, keep)
                _rows(mlp.up_proj, keep)
            mlp.down_proj.weight = torch.nn.Parameter(mlp.down_proj.weight[:, keep])
            mlp.down_proj.in_features = len(keep)
    sizes = list(getattr(sliced.config, "intermediate_size_per_layer", None) or [width] * (layer + 1))
    sizes[layer] = len(keep)
    sliced.config.intermediate_size_per_layer = sizes
    out = os.path.join(scratch, case["name"] + "-mlp")
    sliced.save_pretrained(out)
    # 5.x copies the remote code along, 4.x does not.
    shutil.copy(os.path.join(folder, "modeling_geneprune.py"), out)
    model, info = AutoModelForCausalLM.from_pretrained(out, output_loading_info=True, **kwargs)
    problems = {k: v for k, v in info.items() if v}
    rebuilt, got_width = _mlp_units(model, layer)
    ids = torch.tensor(case["ids"], dtype=torch.long)
    with torch.no_grad():
        diff = (model.eval()(input_ids=ids).logits - zeroed(input_ids=ids).logits).abs().max().item()
    ok = not problems and got_width == len(keep) and diff <= TOLERANCE
    return {"ok": ok, "sizes": sizes, "maxAbsDiff": diff, **({"loadingInfo": problems} if problems else {})}


def perplexity(case, model, tokenizer_dir, device):
    ctx = case["context"]
    stream = case["stream"]
    total, count = 0.0, 0
    rows = [stream[s : min(s + ctx + 1, len(stream))] for s in range(0, len(stream) - 1, ctx)]
    with torch.no_grad():
        for row in rows:
            x = torch.tensor([row[:-1]], dtype=torch.long, device=device)
            y = torch.tensor(row[1:], dtype=torch.long, device=device)
            logits = model(input_ids=x).logits[0].double()
            nll = torch.nn.functional.cross_entropy(logits, y, reduction="sum").item()
            total += nll
            count += len(row) - 1
    mean = total / count
    result = {
        "ok": count == case["tokens"] and abs(mean - case["meanNll"]) <= 1e-5,
        "meanNll": mean,
        "geneprune": case["meanNll"],
        "perplexity": math.exp(mean),
        "tokens": count,
    }
    # The exported tokenizer: each document's ids as geneprune (llama2.c's encoder) gives them, and the BOS the
    # tokenizer adds by itself.
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    mismatched = 0
    for doc, want in zip(case["documents"], case["documentIds"]):
        if tok(doc, add_special_tokens=False)["input_ids"] != want:
            mismatched += 1
    with_special = tok(case["documents"][0])["input_ids"]
    result["tokenizer"] = {
        "documents": len(case["documents"]),
        "mismatched": mismatched,
        "bosAdded": with_special[:1] == [case["bos"]] and with_special[1:] == case["documentIds"][0],
        "class": type(tok).__name__,
    }
    result["ok"] = result["ok"] and mismatched == 0 and result["tokenizer"]["bosAdded"]
    return result


def main():
    p = argparse.ArgumentParser()
    p.add_argument("root")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json")
    p.add_argument("--only", help="run only the cases whose name contains this")
    a = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, device {a.device}")
    rows = []
    scratch = tempfile.mkdtemp(prefix="geneprune-crosscheck-")
    for name in sorted(os.listdir(a.root)):
        case_file = os.path.join(a.root, name, "case.json")
        if not os.path.exists(case_file) or (a.only and a.only not in name):
            continue
        with open(case_file) as f:
            case = json.load(f)
        folder = os.path.join(a.root, name, "model")
        row = {
            "name": case["name"],
            "family": case["family"],
            "layout": case["layout"],
            "remoteCode": case.get("remoteCode", False),
            "mustLoad": case["mustLoad"],
        }
        try:
            model, problems = load(case, folder, a.device)
            row["loaded"] = True
            row["loadingInfo"] = problems
            if case["task"] == "perplexity":
                row.update(perplexity(case, model, folder, a.device))
            else:
                row.update(compare_outputs(case, model, a.device))
            if problems:
                row["ok"] = False
            if case.get("remoteCode"):
                # Without trust_remote_code the stock class must refuse the smaller tensors, never re-initialise them,
                # except GPT-2 in transformers 4.x, which applies the folder's pruned_heads and must then match.
                with open(os.path.join(folder, "config.json")) as f:
                    pruned_heads = "pruned_heads" in json.load(f)
                if pruned_heads and int(transformers.__version__.split(".")[0]) < 5:
                    stock = dict(case, remoteCode=False)
                    model, problems = load(stock, folder, a.device)
                    result = compare_outputs(stock, model, a.device)
                    row["stockClassWithPrunedHeads"] = {**result, **({"loadingInfo": problems} if problems else {})}
                    row["ok"] = row["ok"] and result["ok"] and not problems
                else:
                    try:
                        AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=False)
                        row["stockClassRefuses"] = False
                    except Exception as e:  # the refusal is the expected result
                        row["stockClassRefuses"] = type(e).__name__
                    row["ok"] = row["ok"] and row["stockClassRefuses"] is not False
            if case.get("remoteCode") and case["task"] == "causal-lm":
                row["mlpPerLayer"] = mlp_per_layer(case, folder, a.device, scratch)
                row["ok"] = row["ok"] and row["mlpPerLayer"]["ok"]
        except Exception as e:  # a folder transformers refuses is a result here, not a crash
            row["loaded"] = False
            row["ok"] = False
            row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
            if os.environ.get("CROSSCHECK_TRACE"):
                traceback.print_exc()
        rows.append(row)
        shown = {k: v for k, v in row.items() if k not in ("name",)}
        print(f"{'ok  ' if row['ok'] else 'FAIL'} {row['name']}: {json.dumps(shown)}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"transformers": transformers.__version__, "torch": torch.__version__, "device": a.device, "cases": rows}, f, indent=1)
    shutil.rmtree(scratch, ignore_errors=True)
    bad = [r["name"] for r in rows if r["mustLoad"] and not r["ok"]]
    print(f"{len(rows)} cases; must-load failures: {bad or 'none'}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
