"""A SYNTHETIC mean-ribosome-load (MRL) proxy for 50-nt 5'UTRs, built from published determinants of translation
(not measured data): upstream AUGs (uAUGs) lower MRL, out-of-frame ones (which start an overlapping or out-of-frame
uORF) more than in-frame ones, and a uORF closed by a stop codon less than an open one; the Kozak context of the
coding start codon (which sits right after the UTR) raises it; 5' secondary structure (ViennaRNA minimum free
energy) lowers it. Two differently parameterised proxies label the library: proxy A for the guidance oracle, proxy B
for the held-out evaluation oracle."""

from __future__ import annotations

from dataclasses import dataclass

STOPS = ("UAA", "UAG", "UGA")
KOZAK = "GCCACC"  # the consensus before the start codon (positions -6..-1); -3 (A/G) matters most


def uaugs(seq: str) -> list[int]:
    """0-based positions of every AUG in the UTR."""
    return [p for p in range(len(seq) - 2) if seq[p:p + 3] == "AUG"]


def in_frame(seq: str, p: int) -> bool:
    """Whether an AUG at ``p`` is in frame with the coding start codon right after the UTR."""
    return (len(seq) - p) % 3 == 0


def closed(seq: str, p: int) -> bool:
    """Whether the uORF started at ``p`` meets an in-frame stop codon inside the UTR."""
    return any(seq[q:q + 3] in STOPS for q in range(p + 3, len(seq) - 2, 3))


def kozak(seq: str) -> float:
    """Kozak context score of the UTR's last six letters: 1 for a purine (A/G) at -3, plus 0.2 for each of the other
    five positions matching GCCACC (0 to 2)."""
    tail = seq[-6:]
    score = 1.0 if tail[3] in "AG" else 0.0
    return score + 0.2 * sum(tail[k] == KOZAK[k] for k in (0, 1, 2, 4, 5))


def mfe(seq: str) -> float:
    """Minimum free energy (kcal/mol) of the UTR's secondary structure, ViennaRNA's default model at 37 °C."""
    import RNA
    return float(RNA.fold(seq)[1])


@dataclass(frozen=True)
class Proxy:
    """MRL = base + w_oof·(#open out-of-frame uAUGs) + w_oof_closed·(#closed out-of-frame) + w_if·(#in-frame uAUGs)
    + w_kozak·kozak + w_mfe·max(mfe, mfe_floor) + noise."""

    base: float
    w_oof: float
    w_oof_closed: float
    w_if: float
    w_kozak: float
    w_mfe: float
    mfe_floor: float
    noise: float

    def __call__(self, seq: str) -> float:
        """The noise-free value."""
        oof = [p for p in uaugs(seq) if not in_frame(seq, p)]
        n_closed = sum(closed(seq, p) for p in oof)
        n_if = sum(in_frame(seq, p) for p in uaugs(seq))
        return (self.base + self.w_oof * (len(oof) - n_closed) + self.w_oof_closed * n_closed + self.w_if * n_if
                + self.w_kozak * kozak(seq) + self.w_mfe * max(mfe(seq), self.mfe_floor))


PROXY_A = Proxy(base=6.0, w_oof=-1.5, w_oof_closed=-0.8, w_if=-0.6, w_kozak=0.5, w_mfe=0.06, mfe_floor=-30.0,
                noise=0.3)
PROXY_B = Proxy(base=5.5, w_oof=-1.2, w_oof_closed=-1.0, w_if=-0.9, w_kozak=0.35, w_mfe=0.09, mfe_floor=-18.0,
                noise=0.4)
