"""Running attempts: tickets in, a backend (the local pool or Modal) launched, the attempt supervised
until it ends."""
