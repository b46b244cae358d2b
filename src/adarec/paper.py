"""The published numbers a reproduction is compared with (docs/paper-numbers.md).

Test set, full ranking: HR@5, NDCG@5, HR@20, NDCG@20. "Table 1" is all users; "Table 2" is the
sparse protocol (``shorten_seq_to = 5``). The SASRec row is the paper's BCE-trained SASRec.
"""

from __future__ import annotations

METRICS = ("HR@5", "NDCG@5", "HR@20", "NDCG@20")

Row = tuple[float, float, float, float]

TABLE1: dict[str, dict[str, Row]] = {
    "Beauty": {
        "ADARec": (0.0600, 0.0403, 0.1187, 0.0568),
        "ELCRec": (0.0529, 0.0355, 0.1079, 0.0509),
        "SASRec": (0.0374, 0.0241, 0.0901, 0.0387),
        "DiffDiv (best other baseline)": (0.0575, 0.0375, 0.1152, 0.0548),
    },
    "Sports_and_Outdoors": {
        "ADARec": (0.0341, 0.0228, 0.0745, 0.0341),
        "ELCRec": (0.0286, 0.0185, 0.0648, 0.0286),
        "SASRec": (0.0206, 0.0135, 0.0497, 0.0216),
        "BASRec (best other baseline)": (0.0328, 0.0220, 0.0728, 0.0331),
    },
    "Toys_and_Games": {
        "ADARec": (0.0691, 0.0474, 0.1298, 0.0646),
        "ELCRec": (0.0585, 0.0403, 0.1138, 0.0560),
        "SASRec": (0.0463, 0.0306, 0.0941, 0.0441),
        "BASRec (best other baseline)": (0.0648, 0.0431, 0.1245, 0.0618),
    },
    "Yelp": {
        "ADARec": (0.0264, 0.0167, 0.0712, 0.0291),
        "ELCRec": (0.0248, 0.0153, 0.0667, 0.0275),
        "SASRec": (0.0160, 0.0101, 0.0443, 0.0179),
        "DiffDiv (best other baseline)": (0.0258, 0.0155, 0.0691, 0.0283),
    },
}

TABLE2: dict[str, dict[str, Row]] = {
    "Beauty": {"ADARec": (0.0531, 0.0353, 0.1066, 0.0504),
               "ELCRec": (0.0385, 0.0258, 0.0842, 0.0388)},
    "Sports_and_Outdoors": {"ADARec": (0.0305, 0.0199, 0.0659, 0.0298),
                            "ELCRec": (0.0246, 0.0167, 0.0568, 0.0257)},
    "Toys_and_Games": {"ADARec": (0.0618, 0.0431, 0.1169, 0.0586),
                       "ELCRec": (0.0538, 0.0372, 0.1019, 0.0507)},
    "Yelp": {"ADARec": (0.0200, 0.0124, 0.0559, 0.0225),
             "ELCRec": (0.0188, 0.0108, 0.0514, 0.0178)},
}

# Which paper row a model of ours is measured against. The release is the code behind the
# paper's ADARec numbers, so it is compared with that row too.
PAPER_MODEL = {"adarec": "ADARec", "release": "ADARec", "elcrec": "ELCRec", "sasrec": "SASRec"}


def paper_rows(dataset: str, shorten_seq_to: int | None) -> list[tuple[str, Row]]:
    """Every published row of the paper's ADARec, ELCRec and SASRec on ``dataset`` under
    the protocol, as ("Table N: Model", numbers) (the best other baseline left out)."""
    if shorten_seq_to not in (None, 5):
        return []
    table, label = (TABLE2, "Table 2") if shorten_seq_to == 5 else (TABLE1, "Table 1")
    rows = table.get(dataset, {})
    return [(f"{label}: {m}", rows[m]) for m in ("ADARec", "ELCRec", "SASRec") if m in rows]


def paper_row(dataset: str, model_name: str, shorten_seq_to: int | None) -> tuple[str, Row] | None:
    """The published row for ``model_name`` (a `model.name`) on ``dataset`` under the
    protocol, as ("Table N: Model", numbers), or None when the paper has none."""
    table, label = (TABLE2, "Table 2") if shorten_seq_to == 5 else (TABLE1, "Table 1")
    if shorten_seq_to not in (None, 5):
        return None
    model = PAPER_MODEL.get(model_name)
    row = table.get(dataset, {}).get(model or "")
    return None if row is None else (f"{label}: {model}", row)
