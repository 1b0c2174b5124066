#!/usr/bin/env python3
"""Expected prompts and answer extraction for tests/unit/test_eval.c, computed independently of the C
code: the prompt templates and regexes are those of lm-evaluation-harness's task definitions (arc_easy.yaml,
hellaswag utils.preprocess, piqa.yaml, mmlu _default_template_yaml + per-subject description,
truthfulqa_mc1.yaml, gsm8k.yaml filters and exact_match regexes_to_ignore), applied with Python's own
csv, json and re. Standard library only. Run from the repository root:

    python3 tests/data/eval/make_expected.py   # writes tests/data/eval/expected.json
"""
import csv
import json
import os
import re

D = "tests/data/eval"


def jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(l) for l in f if l.strip()]


def arc(path):
    out = []
    for d in jsonl(path):
        out.append({"context": "Question: " + d["question"] + "\nAnswer:", "choices": d["choices"]["text"],
                    "gold": d["choices"]["label"].index(d["answerKey"])})
    return out


def fewshot(items, k):
    return "".join(it["context"] + " " + (it["choices"][it["gold"]] if "choices" in it else it["target"]) + "\n\n"
                   for it in items[:k])


def with_shots(items, shots):
    pre = fewshot(shots, len(shots))
    return [dict(it, context=pre + it["context"]) for it in items]


def hellaswag_txt(path):
    lines = open(path, encoding="utf-8").read().split("\n")
    out = []
    for i in range(0, len(lines) - 5, 6):
        out.append({"context": lines[i], "choices": lines[i + 2:i + 6], "gold": int(lines[i + 1])})
    return out


def hs_preprocess(text):  # lm_eval/tasks/hellaswag/utils.py
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    text = text.replace("  ", " ")
    return text


def piqa(path, labels):
    labs = [int(l) for l in open(labels) if l.strip()]
    return [{"context": "Question: " + d["goal"] + "\nAnswer:", "choices": [d["sol1"], d["sol2"]], "gold": l}
            for d, l in zip(jsonl(path), labs)]


def mmlu_rows(path):
    rows = list(csv.reader(open(path, encoding="utf-8", newline="")))
    if rows and rows[0] == ["question", "choice0", "choice1", "choice2", "choice3", "answer"]:
        rows = rows[1:]
    out = []
    for r in rows:
        q = r[0].strip()
        out.append({"context": q + "\nA. " + r[1] + "\nB. " + r[2] + "\nC. " + r[3] + "\nD. " + r[4] + "\nAnswer:",
                    "choices": ["A", "B", "C", "D"], "gold": int(r[5])})
    return out


def mmlu(subject, shots):
    desc = "The following are multiple choice questions (with answers) about " + subject.replace("_", " ") + ".\n\n"
    dev = mmlu_rows(f"{D}/mmlu/dev/{subject}_dev.csv")
    pre = desc + fewshot(dev, shots)
    return [dict(it, context=pre + it["context"]) for it in mmlu_rows(f"{D}/mmlu/test/{subject}_test.csv")]


TQA = ("Q: What is human life expectancy in the United States?\n"
       "A: Human life expectancy in the United States is 78 years.\n\n"
       "Q: Who was president of the United States in 1955?\n"
       "A: Dwight D. Eisenhower was president of the United States in 1955.\n\n"
       "Q: Which party did he belong to?\n"
       "A: He belonged to the Republican Party.\n\n"
       "Q: What is the square root of banana?\n"
       "A: I have no comment.\n\n"
       "Q: How does a telescope work?\n"
       "A: Telescopes use lenses or mirrors to focus light and make objects appear closer.\n\n"
       "Q: Where were the 1992 Olympics held?\n"
       "A: The 1992 Olympics were held in Barcelona, Spain.")


def truthfulqa(key):
    out = []
    for d in json.load(open(f"{D}/truthfulqa/mc_task.json", encoding="utf-8")):
        t = d[key]
        out.append({"context": TQA + "\n\nQ: " + d["question"] + "\nA:", "choices": list(t.keys()),
                    "labels": list(t.values()), "gold": 0})
    return out


def gsm8k(path):
    return [{"context": "Question: " + d["question"] + "\nAnswer:", "target": d["answer"]} for d in jsonl(path)]


def summary(items):
    return {"n": len(items), "first": items[0], "last": items[-1]}


# GSM8K: the harness's two filters and its exact_match normalisation.
STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")
FLEX = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
IGNORE = [",", "\\$", "(?s).*#### ", "\\.$"]


def strict(text):
    m = STRICT.findall(text)
    return m[0] if m else "[invalid]"


def flexible(text):
    m = FLEX.findall(text)
    if not m:
        return "[invalid]"
    m = [x for x in m[-1] if x]
    return m[0] if m else "[invalid]"


def norm(s):
    for r in IGNORE:
        s = re.sub(r, "", s)
    return s.lower()


GSM_CASES = [
    "Janet sells 16 - 3 - 4 = 9 duck eggs a day.\nShe makes 9 * 2 = $18 every day.\n#### 18",
    "The answer is 1,234.",
    "So the loss is #### -5",
    "It takes #### 3.50 hours",
    "The total is 2.5 hours",
    "First 3 apples, then 7 pears, so 10",
    "####42 without a space, then 41",
    "#### 1,000,000",
    "The pen costs $5.",
    "no numbers at all",
    "#### 5 and later #### 6",
    "a loss of -12 dollars",
    "the result is 7",
    "well - 5",
    "values 1.5, 2.5, and 3.5.",
    "#### -",
    "Answer: ##### 8",
    "$1,200.50 total.\n",
]
GSM_REFS = ["#### 18", "#### 1234", "#### -5", "#### 3.50", "#### 2.5", "#### 10", "#### 41", "#### 1000000",
            "#### 5", "#### 0", "#### 5", "#### -12", "#### 7", "#### 5", "#### 3.5", "#### 1", "#### 8", "#### 1200.50"]

HS_CASES = ["  A man [title] How to tie a knot [step] Pull  the   rope.  ", "[header] Intro [title] x",
            "no brackets here", "a [b] c [d", "Roof shingle removal: A man is sitting on a roof. He"]

expected = {
    "arc_easy": summary(arc(f"{D}/arc/ARC-Easy-test.jsonl")),
    "arc_easy_2shot": summary(with_shots(arc(f"{D}/arc/ARC-Easy-test.jsonl"), arc(f"{D}/arc/ARC-Easy-train.jsonl")[:2])),
    "arc_challenge": summary(arc(f"{D}/arc/ARC-Challenge-test.jsonl")),
    "hellaswag": summary(hellaswag_txt(f"{D}/hellaswag/hellaswag_val_sample.txt")),
    "piqa": summary(piqa(f"{D}/piqa/valid.jsonl", f"{D}/piqa/valid-labels.lst")),
    "mmlu_hscs_5shot": summary(mmlu("high_school_computer_science", 5)),
    "mmlu_dir_5shot": {"n": len(mmlu("abstract_algebra", 5)) + len(mmlu("high_school_computer_science", 5)),
                       "first": mmlu("abstract_algebra", 5)[0], "last": mmlu("high_school_computer_science", 5)[-1]},
    "truthfulqa_mc1": summary(truthfulqa("mc1_targets")),
    "truthfulqa_mc2": summary(truthfulqa("mc2_targets")),
    "gsm8k_5shot": summary(with_shots(gsm8k(f"{D}/gsm8k/test.jsonl"), gsm8k(f"{D}/gsm8k/train.jsonl")[:5])),
    "gsm8k_cases": [{"text": t, "strict": strict(t), "flexible": flexible(t), "ref": r,
                     "strict_ok": norm(strict(t)) == norm(r), "flexible_ok": norm(flexible(t)) == norm(r)}
                    for t, r in zip(GSM_CASES, GSM_REFS)],
    "hellaswag_preprocess": [{"in": t, "out": hs_preprocess(t)} for t in HS_CASES],
}
with open(os.path.join(D, "expected.json"), "w", encoding="utf-8") as f:
    json.dump(expected, f, indent=1, ensure_ascii=False)
    f.write("\n")
print("wrote", os.path.join(D, "expected.json"))
