"""Human safety labels with Argilla: rows out to a labelling queue, submitted labels back into the run.

* `push` sends a run's rows to an Argilla dataset (record id = the row's stable id, so pushing
  again adds only what is missing and never touches a record people already labelled);
* `pull` stores the submitted responses in the run as a versioned labels table
  (`labels/pull-NNNNN.parquet` + its manifest) and puts label statistics in the card;
* the plugins close the loop: `--label-every N` queues new rows during a run, `--use-labels`
  tells the weakness stage what humans found.

The argilla SDK is imported only inside the functions that talk to a server, so reading local
labels (stats, weakness feedback) works without it.
"""

from __future__ import annotations

from hfadvisor.errors import LabellingError

__all__ = ["LabellingError"]
