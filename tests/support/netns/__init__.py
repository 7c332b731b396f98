"""Separate hosts on one machine for the network-fault suite (``tests/netfaults``).

Each NATS node and each service replica gets its own network namespace, joined to the others by a
bridge (itself in a namespace of its own), with an address in a private /24 chosen per run; the test
process reaches them from the host namespace through one veth. Faults are real ones on those links:
iptables DROP and blackhole routes (partitions), link down, SIGSTOP/SIGKILL of a host's processes,
a TCP proxy on one node's path for delay, loss and stalls (this kernel has no ``netem``), and a
step of one host's wall clock (libfaketime). Everything made here carries the run's name prefix and
is removed on teardown, at exit, on SIGTERM/SIGINT, and by the next run if this one was SIGKILLed.
"""
