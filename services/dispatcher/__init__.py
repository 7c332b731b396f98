"""gpurelay dispatcher: folds JOBS into the job records (``store``), routes each attempt by the route
table (:mod:`contracts.route_table`) to the local pool or Modal, and supervises it. Runs workers
through :mod:`modal_workers` (``local_host``), which never imports it back.
"""
