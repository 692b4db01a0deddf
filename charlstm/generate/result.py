"""What generation returns: each text with its log-probability where it is known, and,
for documents, what was drawn."""

from __future__ import annotations

from dataclasses import dataclass, field

from charlstm.model import bits_per_char


@dataclass(frozen=True)
class Generated:
    """One text: the prime, then what was generated. A search and a document know the
    model's own log-probability of it (temperature 1), so texts compare by bits per
    character whatever the temperature they were drawn at; a plain draw does not."""

    text: str
    log_prob: float | None = None  # ln P(generated, and a document's end | start), nats
    chars: int = 0  # characters generated after the prime
    ended: bool = False  # a document that drew its end id (False: cut at the length)
    label: str | None = None

    @property
    def mean_log_prob(self) -> float:
        """Per prediction: each character, and a document's end."""
        return (self.log_prob or 0.0) / max(self.chars + self.ended, 1)

    @property
    def bpc(self) -> float:
        return bits_per_char(-self.mean_log_prob)

    def to_dict(self) -> dict:
        row = {"text": self.text}
        if self.label is not None:
            row["label"] = self.label
        if self.log_prob is None:
            return row
        return row | {"log_prob": self.log_prob, "bpc": self.bpc, "chars": self.chars,
                      "ended": self.ended}  # fmt: skip


@dataclass
class Tally:
    """What was drawn: how many in all, repeats, and how many were training, held-out
    or new documents (counted once per distinct text, as makemore reports)."""

    drawn: int = 0
    repeats: int = 0
    told: bool = False  # whether the training documents were at hand to tell new ones
    places: dict[str, int] = field(default_factory=lambda: {"train": 0, "val": 0, "new": 0})

    def line(self) -> str:
        p = self.places
        return (
            f"{self.drawn:,} document(s) drawn, {self.repeats:,} repeat(s); of the distinct: "
            f"{p['train']:,} in the training split, {p['val']:,} held out, {p['new']:,} new"
        )


def likeliest(texts: list[Generated]) -> Generated:
    """The text with the fewest bits per character by the model's own probabilities."""
    return min(texts, key=lambda t: t.bpc)


@dataclass(frozen=True)
class Generation:
    """What one call of the entry point made. `mode` says how: "sample" (drawn, one text
    per --num-samples), "search" (beam search or best-of: one text, scored) or
    "documents" (whole documents from a document model, scored)."""

    mode: str
    samples: list[Generated]
    asked: int  # texts asked for: --unique/--novel may find fewer documents
    tally: Tally | None = None  # documents: how many drawn, repeated, new

    @property
    def texts(self) -> list[str]:
        return [s.text for s in self.samples]

    def to_dict(self) -> dict:
        """The shape `POST /sample` answers with."""
        if self.mode == "search":
            return self.samples[0].to_dict()
        if self.mode == "documents":
            tally = self.tally
            return {"documents": [s.to_dict() for s in self.samples], "drawn": tally.drawn,
                    "repeats": tally.repeats,
                    "places": tally.places if tally.told else None}  # fmt: skip
        return {"texts": self.texts}
