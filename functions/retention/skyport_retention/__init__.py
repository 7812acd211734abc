"""The retention function: applies the retention rules daily (skyport.retention)."""
