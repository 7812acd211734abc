"""Scanning (issue 14): what software an image holds (the scanner), its SBOM, and the
scan on push that stores both with the vulnerability report as referrers of the image.
``model.py`` holds the records every part shares."""
