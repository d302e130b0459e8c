"""Writes the two small synthetic example files next to this script (seeded, reproducible):

    python src/pdselect/examples/make_examples.py

wide_ratings.csv    one row per response: question, answer, helpfulness, correctness,
                    conciseness (1-5) and an overall (1-10) -> configs/examples/wide.yaml
long_ratings.jsonl  one row per response x aspect: prompt, response, aspect, rating (1-5), no
                    overall -> configs/examples/long.yaml

The answers are templated: a correct or a wrong fact, with 0-3 sentences of detail. Detail
raises helpfulness and lowers conciseness, the fact decides correctness, so the aspects
conflict the way real multi-aspect ratings do. Synthetic: for trying the tool, not for results.
"""

import csv
import json
import random
from pathlib import Path

TOPICS = [("the boiling point of water at sea level", "100 degrees Celsius", "80 degrees Celsius"),
          ("the capital of Australia", "Canberra", "Sydney"),
          ("the largest planet in the solar system", "Jupiter", "Saturn"),
          ("the chemical symbol for gold", "Au", "Ag"),
          ("the number of continents", "seven", "five"),
          ("the author of Pride and Prejudice", "Jane Austen", "Charlotte Bronte"),
          ("the speed of light in vacuum", "about 300,000 km per second",
           "about 30,000 km per second"),
          ("the freezing point of water in Fahrenheit", "32 degrees", "0 degrees"),
          ("the longest river in Africa", "the Nile", "the Congo"),
          ("the smallest prime number", "2", "1"),
          ("the year the Berlin Wall fell", "1989", "1991"),
          ("the main gas in Earth's atmosphere", "nitrogen", "oxygen"),
          ("the hardest natural mineral", "diamond", "quartz"),
          ("the currency of Japan", "the yen", "the won"),
          ("the number of bones in an adult human", "206", "250"),
          ("the inventor of the telephone", "Alexander Graham Bell", "Thomas Edison"),
          ("the largest ocean", "the Pacific", "the Atlantic"),
          ("the square root of 144", "12", "14"),
          ("the language with the most native speakers", "Mandarin Chinese", "English"),
          ("the planet closest to the Sun", "Mercury", "Venus")]
STYLES = ["What is {t}?", "Quick question: what is {t}?", "Can you tell me {t}?",
          "I keep forgetting {t}. What is it?"]
DETAIL = ["This is a commonly cited fact in textbooks.",
          "You can check it in any standard reference work.",
          "It is worth remembering because it comes up often in quizzes.",
          "Many people get this wrong, so it is a good one to know."]


def responses(rng, right, wrong):
    out = []
    for correct, n_detail in [(True, 0), (True, 2), (False, 1), (rng.random() < 0.5, 3)]:
        fact = right if correct else wrong
        text = f"It is {fact}." + "".join(" " + d for d in rng.sample(DETAIL, n_detail))
        help_ = min(5, max(1, 2 + n_detail + (1 if correct else -1) + rng.choice([-1, 0, 0, 1])))
        corr = min(5, max(1, (5 if correct else 1) + rng.choice([-1, 0, 0])))
        conc = min(5, max(1, 5 - n_detail + rng.choice([-1, 0, 0, 1])))
        out.append((text, help_, corr, conc))
    return out


def main():
    here = Path(__file__).parent
    rng = random.Random(0)
    wide = []
    for i, (t, right, wrong) in enumerate(TOPICS * 2):
        q = STYLES[i // len(TOPICS) * 2 % len(STYLES)].format(t=t)
        q = q if i < len(TOPICS) else q.replace("?", ", please?")
        for text, h, c, s in responses(rng, right, wrong):
            overall = min(10, max(1, round(1.2 * c + 0.6 * h + 0.2 * s + rng.uniform(-1, 1))))
            wide.append({"question_id": f"q{i:02d}", "question": q, "answer": text,
                         "helpfulness": h, "correctness": c, "conciseness": s,
                         "overall": overall})
    with open(here / "wide_ratings.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(wide[0]))
        w.writeheader()
        w.writerows(wide)
    rng = random.Random(1)
    with open(here / "long_ratings.jsonl", "w", encoding="utf-8") as f:
        for i, (t, right, wrong) in enumerate(TOPICS + TOPICS[:10]):
            prompt = STYLES[(i + 1) % len(STYLES)].format(t=t) + ("" if i < len(TOPICS)
                                                                   else " Be brief.")
            for text, h, c, s in responses(rng, right, wrong):
                for aspect, rating in (("helpfulness", h), ("correctness", c),
                                       ("conciseness", s)):
                    f.write(json.dumps({"prompt": prompt, "response": text, "aspect": aspect,
                                        "rating": rating}) + "\n")


if __name__ == "__main__":
    main()
