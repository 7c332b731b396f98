"""The ``gpurelay`` console script (typer + rich): the top layer, free to compose every service
(``dev`` runs them all in one loop; ``openapi`` merges the gateway's and the notifier's routes).
"""
