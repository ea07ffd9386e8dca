"""A local TGI-protocol server over the embedded model (`hfadvisor serve`)."""
