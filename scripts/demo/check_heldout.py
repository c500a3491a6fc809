"""Checks that the evaluation cases are really held out from a training set: no eval URL, no eval
prompt and no eval city pair (convert, ordered) occurs in the training conversations. Exits 1 when one does.

    python scripts/demo/check_heldout.py train.jsonl tests/fixtures/demo/eval_cases.jsonl
"""

import json
import sys


def main():
    train_path, cases_path = sys.argv[1:3]
    cases = [json.loads(line) for line in open(cases_path)]
    urls = {url for case in cases for url in case["pages"]}
    prompts = {case["prompt"].lower() for case in cases}
    pairs = {tuple(c["expect"]["cities"]) for c in cases if c["task"] == "task_time_convert"}
    seen_urls, seen_prompts, seen_pairs, total = set(), set(), set(), 0
    for line in open(train_path):
        conv = json.loads(line)
        total += 1
        text = json.dumps(conv["messages"], ensure_ascii=False)
        seen_urls.update(u for u in urls if json.dumps(u)[1:-1] in text)
        seen_prompts.update(m["content"].lower() for m in conv["messages"]
                            if m["role"] == "user" and m["content"].lower() in prompts)
        expect = conv["expect"]
        if conv["task"] == "task_time_convert":
            seen_pairs.update({tuple(expect["cities"])} & pairs)
    print(f"{total} training conversations; of {len(cases)} eval cases: {len(seen_urls)}/{len(urls)} URLs, "
          f"{len(seen_prompts)}/{len(prompts)} prompts, {len(seen_pairs)}/{len(pairs)} convert city pairs seen in training")
    for kind, seen in (("URL", seen_urls), ("prompt", seen_prompts), ("city pair", seen_pairs)):
        for item in sorted(seen)[:10]:
            print(f"  seen {kind}: {item}")
    sys.exit(1 if seen_urls or seen_prompts or seen_pairs else 0)


if __name__ == "__main__":
    main()
