"""The fold partitions' pinned consumers: a durable consumer whose one priority group is pinned to one
client at a time (JetStream's ``pinned_client``), made and pulled with the JetStream API's own requests."""
