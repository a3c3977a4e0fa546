"""Files: atomic writes, guarded reads, JSON and safetensors (``fileio``), and results files
checked against their schema, sealed with their own SHA-256 (``schema``). The lowest layer
above ``core``: datasets, run folders and every results file read and write through it."""
