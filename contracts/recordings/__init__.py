"""A live session's recording: its manifest, where it lies in storage, a replay's comparison, joint angles.

``manifest`` (what ``GET /v1/sessions/{id}/recording`` answers and exports read), ``layout`` (its files
under the session's results), ``comparison`` (``comparison.json`` of a replay) and ``joints`` (joint
angles in radians, converted from LeRobot's SO-100/101 readings).
"""
