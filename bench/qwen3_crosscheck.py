"""Loads the folders bench/qwen3-crosscheck.ts wrote with transformers' Qwen3ForCausalLM (fp32, eager attention)
and compares their logits with geneprune's. One line per case; exit 1 when a dense or padded case differs by more
than 1e-4 or loads with missing / unexpected tensors. The compact case is informational: stock Qwen3 sizes every
layer from num_attention_heads, so it cannot read per-layer head counts.

    /work/pyx/bin/python bench/qwen3_crosscheck.py tmp/qwen3-crosscheck
"""

import json
import os
import sys

import torch
import transformers
from transformers import Qwen3ForCausalLM


def main(root):
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    failed = False
    for name in sorted(os.listdir(root)):
        folder = os.path.join(root, name)
        case_file = os.path.join(folder, "case.json")
        if not os.path.isfile(case_file):
            continue
        with open(case_file) as f:
            case = json.load(f)
        must = not name.endswith("compact")
        try:
            model, info = Qwen3ForCausalLM.from_pretrained(
                folder, dtype=torch.float32, attn_implementation="eager", output_loading_info=True
            )
            problems = {k: v for k, v in info.items() if v}
            ids = torch.tensor(case["ids"], dtype=torch.long)
            with torch.no_grad():
                logits = model.eval()(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.float()
            expected = torch.tensor(case["expected"], dtype=torch.float32).reshape(case["shape"])
            diff = (logits - expected).abs().max().item()
            ok = diff <= 1e-4 and not problems
            print(f"{name}: max |diff| {diff:.3g}{' ' + str(problems) if problems else ''} {'ok' if ok else 'FAIL'}")
        except Exception as e:  # noqa: BLE001 - a report line per case
            ok = False
            print(f"{name}: {type(e).__name__}: {str(e).splitlines()[0][:200]} {'FAIL' if must else '(expected)'}")
        failed = failed or (must and not ok)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main(sys.argv[1])
