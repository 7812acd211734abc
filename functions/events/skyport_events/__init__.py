"""The events function: the table's stream onto the registry's EventBridge bus (skyport.event_bus)."""
