"""Valid, synthetic PII values and the templates that plant them in shoppers' text."""

from __future__ import annotations

import random

TEMPLATES = {
    "EMAIL": ["my email is {} thanks", "contact {}", "{}"],
    "PHONE": ["please call {} about my order", "tel {}", "text me on {} tonight"],
    "CREDIT_CARD": ["card {} was charged twice", "refund to {}", "{}"],
    "IBAN": ["pay to iban {} please", "{}"],
    "US_SSN": ["ssn {}", "my social is {}"],
    "UK_NINO": ["ni number {}", "NI {} for the invoice"],
    "CN_RESIDENT_ID": ["身份证 {}", "id {}"],
    "IP_ADDRESS": ["login from {} failed", "ip {}"],
    "ADDRESS": ["ship to {} please", "deliver to {}"],
}


def _luhn_digit(body: str) -> str:
    total = 0
    for position, char in enumerate(reversed(body)):
        value = int(char)
        if position % 2 == 0:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return str((10 - total % 10) % 10)


def card(rng: random.Random) -> str:
    body = rng.choice(["4", "51", "37", "6011"])
    body += "".join(rng.choice("0123456789") for _ in range(15 - len(body)))
    digits = body + _luhn_digit(body)
    style = rng.choice(["plain", " ", "-"])
    return digits if style == "plain" else style.join(digits[i : i + 4] for i in range(0, 16, 4))


def cn_resident_id(rng: random.Random) -> str:
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    born = f"{rng.randint(1950, 2005)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    body = rng.choice(["110105", "310104", "440305"]) + born + f"{rng.randint(0, 999):03d}"
    total = sum(int(d) * w for d, w in zip(body, weights, strict=True))
    return body + "10X98765432"[total % 11]


def iban(rng: random.Random) -> str:
    bban = "WEST" + "".join(rng.choice("0123456789") for _ in range(14))
    number = int("".join(str(int(c, 36)) for c in bban + "GB00"))
    text = f"GB{98 - number % 97:02d}{bban}"
    return " ".join(text[i : i + 4] for i in range(0, len(text), 4))


def phone(rng: random.Random) -> str:
    return rng.choice(
        [
            f"({rng.choice(['212', '415', '312', '617'])}) {rng.randint(200, 999)}-"
            f"{rng.randint(1000, 9999)}",
            f"+44 20 7946 {rng.randint(1000, 9999)}",
            f"+1 415 {rng.randint(200, 999)} {rng.randint(1000, 9999)}",
            f"13{rng.randint(800000000, 999999999)}",
        ]
    )


def value(entity: str, rng: random.Random) -> str:
    """One valid value of the entity."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    match entity:
        case "EMAIL":
            local = "".join(rng.choice(letters) for _ in range(rng.randint(3, 10)))
            return (
                f"{local}.{rng.randint(1, 99)}@{rng.choice(['example.com', 'mail.co.uk', 'qq.cn'])}"
            )
        case "PHONE":
            return phone(rng)
        case "CREDIT_CARD":
            return card(rng)
        case "IBAN":
            return iban(rng)
        case "US_SSN":
            return f"{rng.randint(100, 665)}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"
        case "UK_NINO":
            return f"{rng.choice(['AB', 'JR', 'SK', 'WE'])} {rng.randint(10, 99)} " \
                   f"{rng.randint(10, 99)} {rng.randint(10, 99)} {rng.choice('ABCD')}"  # fmt: skip
        case "CN_RESIDENT_ID":
            return cn_resident_id(rng)
        case "IP_ADDRESS":
            return ".".join(str(rng.randint(1, 254)) for _ in range(4))
        case "ADDRESS":
            street = rng.choice(["Baker", "Elm", "Market", "Church", "High"])
            kind = rng.choice(["Street", "Road", "Avenue", "Lane", "Drive"])
            return f"{rng.randint(1, 999)} {street} {kind}"
    raise ValueError(entity)


def labelled(n_per_entity: int, seed: int = 7) -> list[tuple[str, str | None, str]]:
    """(text, entity, planted value) for every entity and template."""
    rng = random.Random(seed)
    rows: list[tuple[str, str | None, str]] = []
    for entity, templates in TEMPLATES.items():
        for i in range(n_per_entity):
            planted = value(entity, rng)
            rows.append((templates[i % len(templates)].format(planted), entity, planted))
    return rows
