"""One batch pipeline, two engines.

An engine (:mod:`~finflow_core.pipeline.local` in this process, or
:mod:`~finflow_core.pipeline.dask_engine` on a cluster) turns a batch file into scored
:class:`~finflow_core.pipeline.run.Part`\\ s in file order; :func:`~finflow_core.pipeline.run.run_batch`
adds them up, hands each to a sink (the store) and builds the one summary.
"""
