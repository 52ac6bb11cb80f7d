"""Fixed vocabularies of the playground: the ground truth lives here, so it is never guessed.

Every word list is disjoint from the others (checked by the tests), so a token's role can be
read back from the word alone. Spurious words are chosen to carry no sentiment of their own:
any association with a label is planted by the generator, never by meaning.
"""
from __future__ import annotations

LABELS = (0, 1, 2)  # negative, neutral, positive (TomBERT order)
LABEL_NAMES = ("negative", "neutral", "positive")

TARGETS: tuple[str, ...] = (
    "Arsenal", "Chelsea", "Liverpool", "Real Madrid", "Barcelona", "Juventus", "the Lakers",
    "the Yankees", "Taylor Swift", "Beyonce", "Adele", "Drake", "Ed Sheeran", "Lady Gaga",
    "LeBron James", "Serena Williams", "Lionel Messi", "Roger Federer", "Apple", "Tesla",
    "Netflix", "Starbucks", "Samsung", "Nike", "Spotify", "Uber", "Google", "Microsoft",
    "London", "Paris", "Tokyo", "Boston", "Chicago", "Berlin", "Game of Thrones",
    "Stranger Things", "The Office", "Star Wars", "Marvel", "the BBC", "CNN", "Coldplay",
)

# Genuine sentiment: the word in a target's own clause decides that target's label.
SENTIMENT_WORDS: dict[int, tuple[str, ...]] = {
    2: ("brilliant", "amazing", "fantastic", "superb", "excellent", "wonderful",
        "outstanding", "great", "impressive", "lovely", "incredible", "magnificent"),
    0: ("awful", "terrible", "dreadful", "horrible", "pathetic", "useless",
        "disappointing", "abysmal", "shameful", "miserable", "appalling", "dire"),
    1: ("okay", "average", "ordinary", "alright", "standard", "typical",
        "unremarkable", "normal", "passable", "moderate", "so-so", "middling"),
}

# One clause per target: {T} is the target span, {S} its sentiment word.
CLAUSE_TEMPLATES: tuple[str, ...] = (
    "{T} was {S} tonight", "{T} looked {S} today", "{T} seems {S} lately",
    "honestly {T} is {S}", "I think {T} was {S}", "{T} has been {S} this week",
    "everyone says {T} is {S}", "{T} felt {S} again", "people find {T} {S}",
    "{T} is just {S}", "my verdict on {T} is {S}", "{T} turned out {S}",
    "{T} sounded {S} in the interview", "so {T} was {S} as usual",
)
CONNECTORS: tuple[str, ...] = ("but", "while", "and", "whereas", "meanwhile", "though")
FILLERS: tuple[str, ...] = ("lol", "tbh", "#thoughts", "#news", "smh", "ngl", "fr", "#live")

# Planted spurious words: neutral-meaning nouns, three per class, each in shared frames
# ("at the stadium" / "at the airport") so only the word itself differs between classes.
SPURIOUS_WORDS: dict[int, dict[str, str]] = {  # class -> {word: frame kind}
    2: {"stadium": "place", "thursday": "day", "podcast": "thing"},
    0: {"airport": "place", "monday": "day", "newsletter": "thing"},
    1: {"kitchen": "place", "wednesday": "day", "update": "thing"},
}
SPURIOUS_FRAMES: dict[str, tuple[str, ...]] = {  # {W} is the spurious word
    "place": ("at the {W}", "near the {W}", "outside the {W}"),
    "day": ("on {W}", "this {W}", "last {W}"),
    "thing": ("after the {W}", "since the {W}", "thanks to the {W}"),
}


def spurious_class_of(word: str) -> int | None:
    """Planted class of a spurious word, or None for any other token."""
    for label, words in SPURIOUS_WORDS.items():
        if word in words:
            return label
    return None


def sentiment_class_of(word: str) -> int | None:
    """Genuine class of a sentiment word, or None for any other token."""
    for label, words in SENTIMENT_WORDS.items():
        if word in words:
            return label
    return None
