"""Write the demo smoke sample: distill_lora/demo_data/{train,validation,test}.jsonl.

Texts come from templates with hard contrasts: direct hate and personal abuse (label 1) against
negation, quoted or reported abuse, counter-speech, profanity that attacks no one and neutral
mentions of groups (label 0). Each template belongs to exactly one split, so test texts are not
near-copies of training texts. Each row names its template ("template": "direct hate/8", the 8th template of
that category): the texts of one template are near-duplicates, so the report resamples them together
(configs/demo.yaml sets data.group_column: template). Each row also names its category ("category": "negation"): the
report scores every model on each category (configs/demo.yaml sets data.slice_column: category).
Run: python scripts/make_demo_data.py  (deterministic, seed 0).
"""

import json
import random
from pathlib import Path

GROUPS = [
    "immigrants",
    "refugees",
    "muslims",
    "jews",
    "christians",
    "women",
    "gay people",
    "trans people",
    "black people",
    "asians",
    "disabled people",
    "old people",
    "mexicans",
    "atheists",
]
TARGETS = [
    "you",
    "my neighbour",
    "that referee",
    "the new guy at work",
    "my landlord",
    "this streamer",
    "the cashier",
    "our coach",
    "that reporter",
    "my cousin",
]
THINGS = ["concert", "pizza", "game last night", "new album", "sunset", "weekend", "movie", "trip", "burger", "match"]
INSULTS = ["vermin", "parasites", "subhuman trash", "filth", "animals", "a disease"]

# category: (label, [templates]); the first 5 of each list train, the next 2 validate, the last 2 test
TEMPLATES = {
    "direct hate": (
        1,
        [
            "{group} are {insult} and should be thrown out of this country",
            "all {group} are {insult}, every single one of them",
            "i hate {group} so much, they ruin everything they touch",
            "{group} do not deserve to live among decent people",
            "get rid of {group} before they infect us all",
            "never trust {group}, they are lying {insult}",
            "{group} should be locked up, all of them, forever",
            "honestly the world would be better without {group}",
            "{group} are {insult} who breed like rats",
        ],
    ),
    "personal abuse": (
        1,
        [
            "{target} is a worthless piece of garbage",
            "shut up {target}, you pathetic brainless idiot",
            "{target} is a disgusting loser and everyone hates them",
            "i hope {target} gets hit by a bus, useless moron",
            "{target} should just disappear, nobody wants that stupid clown",
            "{target} is the dumbest waste of oxygen i have ever seen",
            "go to hell {target}, you ugly worthless freak",
            "{target} is a spineless rat and a total moron",
            "nobody cares about {target}, the pathetic idiot should shut up",
        ],
    ),
    "negation": (
        0,
        [
            "{group} are not {insult}, they are people like you and me",
            "i do not think {group} are a threat to anyone",
            "it is simply false that {group} ruin everything",
            "no, {group} are not the problem here",
            "{group} are not {insult} and never were",
            "nobody should believe that {group} are {insult}",
            "i refuse to accept that {group} are dangerous",
            "{group} are not lying {insult}, that is a myth",
            "it is not true that {group} should be thrown out",
        ],
    ),
    "reported abuse": (
        0,
        [
            "he called {group} {insult} and i reported his post",
            "the article quotes a troll who said {group} are {insult}",
            "someone wrote that {group} are {insult} on the wall, it was removed today",
            "my friend was told that {group} are {insult}, she is still upset",
            "the court heard that the man shouted {group} are {insult}",
            "a user posted that {group} are {insult} and got banned",
            "researchers collected posts saying {group} are {insult} to study online hate",
            "the letter claimed {group} are {insult}; police are investigating",
            "she was harassed by a stranger yelling that {group} are {insult}",
        ],
    ),
    "counter-speech": (
        0,
        [
            "calling {group} {insult} is hateful and wrong",
            "stop spreading hate about {group}, it hurts real people",
            "hating {group} says more about you than about them",
            "i stand with {group} against everyone who calls them {insult}",
            "if you think {group} are {insult}, please talk to one of them",
            "words like {insult} used against {group} have no place here",
            "we will not let anyone treat {group} as {insult}",
            "{group} deserve respect, not being called {insult}",
            "shame on those who call {group} {insult}",
        ],
    ),
    "harmless profanity": (
        0,
        [
            "holy shit, the {thing} was amazing",
            "damn, that {thing} was so good",
            "fucking finally, the {thing} is here",
            "this {thing} is so damn beautiful i could cry",
            "hell yes, best {thing} ever",
            "what the hell, that {thing} was incredible",
            "shit, i forgot how much i loved this {thing}",
            "damn right the {thing} was worth it",
            "bloody hell, what a {thing}",
        ],
    ),
    "neutral mention": (
        0,
        [
            "the {group} community centre opens on monday",
            "a new study surveyed {group} about housing costs",
            "{group} celebrated the festival downtown this weekend",
            "the city council met with {group} to discuss the new park",
            "a documentary about {group} airs tonight",
            "local {group} organised a food drive for the winter",
            "the museum opened an exhibition on the history of {group}",
            "{group} and their families gathered for the parade",
            "the report describes how {group} use public transport",
        ],
    ),
}
PER_TEMPLATE = {"train": 24, "validation": 10, "test": 10}


def fill(template: str, rng: random.Random) -> str:
    return template.format(
        group=rng.choice(GROUPS), target=rng.choice(TARGETS), thing=rng.choice(THINGS), insult=rng.choice(INSULTS)
    )


def main() -> None:
    rng = random.Random(0)
    out = Path(__file__).resolve().parent.parent / "distill_lora" / "demo_data"
    out.mkdir(parents=True, exist_ok=True)
    seen = set()
    for split, (lo, hi) in {"train": (0, 5), "validation": (5, 7), "test": (7, 9)}.items():
        rows = []
        for category, (label, templates) in TEMPLATES.items():
            for number, template in enumerate(templates[lo:hi], lo + 1):
                made = 0
                for _ in range(200):  # draw until enough distinct texts
                    text = fill(template, rng)
                    if text not in seen:
                        seen.add(text)
                        row = {"text": text, "label": label, "template": f"{category}/{number}"}
                        rows.append({**row, "category": category})
                        made += 1
                    if made == PER_TEMPLATE[split]:
                        break
        rng.shuffle(rows)
        with open(out / f"{split}.jsonl", "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows)
        print(split, len(rows), "positive", sum(r["label"] for r in rows))


if __name__ == "__main__":
    main()
