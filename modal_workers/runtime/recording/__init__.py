"""A live session's recording and its sources, the runtime's part: what its worker records
(``writer``), what feeds a session from a dataset or a recording (``source``, ``feeder``) and how a
replay compares with the session it replayed (``comparison``); ``glue`` ties them to one run."""
