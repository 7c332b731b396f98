"""gpurelay dispatcher: folds JOBS into the job records (``fold``, ``store``), picks which queued
attempt fills a slot (``scheduling``), runs each attempt by the route table
(:mod:`contracts.route_table`) on the local pool or Modal and supervises it (``running``). Runs
workers through :mod:`modal_workers` (``runtime.local_host``), which never imports it back.
"""
