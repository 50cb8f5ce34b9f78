"""A figure: name -> value, unit, target and the ratio to the target (or to a baseline)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    target: float | None = None
    higher_is_better: bool = False
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """value / target; below 1 is good for costs, above 1 for rates."""
        return None if not self.target else self.value / self.target

    @property
    def meets(self) -> bool | None:
        if self.target is None:
            return None
        return self.value >= self.target if self.higher_is_better else self.value <= self.target

    def row(self) -> str:
        target = "" if self.target is None else f"{'>=' if self.higher_is_better else '<='} {self.target:g}"
        verdict = {True: "ok", False: "MISSED", None: ""}[self.meets]
        ratio = "" if self.ratio is None else f"{self.ratio:.2f}x"
        return f"{self.name:44} {self.value:14.2f} {self.unit:12} {target:14} {ratio:8} {verdict:6} {self.note}"

    def as_json(self) -> dict[str, object]:
        return {**asdict(self), "ratio": self.ratio, "meets": self.meets}
