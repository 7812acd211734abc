"""Vulnerability data (issue 14): the OSV records, mirrored and loaded, and matching an
image's inventory (skyport.scanning.model) against them."""
