"""Loads the folders test/crosscheck/hf-export.ts wrote with Python transformers and compares their outputs with
geneprune's (see that file). Prints one line per case and writes a JSON summary; exits 1 when a folder that a
stock transformers class must load (padded and dense layouts) fails to load or differs.

    python3 test/crosscheck/hf_export.py tmp/crosscheck [--device cpu|cuda] [--json FILE]
"""

import argparse
import json
import math
import os
import sys
import traceback

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

TOLERANCE = 1e-4


def load(case, folder, device):
    cls = AutoModelForCausalLM if case["task"] in ("causal-lm", "perplexity") else AutoModelForSequenceClassification
    model, info = cls.from_pretrained(
        folder, dtype=torch.float32, attn_implementation="eager", output_loading_info=True
    )
    problems = {k: v for k, v in info.items() if v and k != "error_msgs"}
    if info.get("error_msgs"):
        problems["error_msgs"] = info["error_msgs"]
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
    return {"ok": diff / scale <= TOLERANCE, "maxAbsDiff": diff, "scale": scale}


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
    a = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, device {a.device}")
    rows = []
    for name in sorted(os.listdir(a.root)):
        case_file = os.path.join(a.root, name, "case.json")
        if not os.path.exists(case_file):
            continue
        with open(case_file) as f:
            case = json.load(f)
        folder = os.path.join(a.root, name, "model")
        row = {"name": case["name"], "family": case["family"], "layout": case["layout"], "mustLoad": case["mustLoad"]}
        try:
            model, problems = load(case, folder, a.device)
            row["loaded"] = True
            row["loadingInfo"] = problems
            if case["task"] == "perplexity":
                row.update(perplexity(case, model, folder, a.device))
            else:
                row.update(compare_outputs(case, model, a.device))
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
    bad = [r["name"] for r in rows if r["mustLoad"] and not r["ok"]]
    print(f"{len(rows)} cases; must-load failures: {bad or 'none'}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
