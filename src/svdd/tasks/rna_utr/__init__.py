"""RNA task: 5'UTR design for mean ribosome load -- SYNTHETIC. 50-nt UTRs; the library is random N50 sequences
and its MRL labels come from a proxy built on published determinants (uAUGs, uORFs, Kozak context, ViennaRNA
folding energy; see `proxy`), not from measurements. Built only through the folder-task commands
(`make train-rna`): `svdd train prior` on the library, `svdd train oracle` on proxy A's labels (guidance) and on
proxy B's (held-out evaluation, another split and seed), `svdd train value`."""

from __future__ import annotations

from pathlib import Path

from ..folder import FolderTask

WEIGHTS = Path(__file__).parent / "weights"


def build_spec(num_steps: int | None = None):
    value = WEIGHTS / "value"
    return FolderTask(WEIGHTS / "prior", WEIGHTS / "oracle-guidance", WEIGHTS / "oracle-evaluation",
                      value if (value / "svdd.json").exists() else None,
                      reward_name="synthetic MRL, proxy A oracle (guidance)",
                      eval_name="synthetic MRL, proxy B oracle (evaluation)")(num_steps=num_steps)
