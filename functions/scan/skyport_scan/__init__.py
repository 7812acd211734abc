"""The scan functions (template.yaml: ScanFunction, RescanFunction, and the OSV mirror's),
one package with one entry point module each (``scan_on_push``, ``rescan``,
``osv_mirror``), so that each function builds only what it uses. The work is the core's:
skyport.scanning.service.ScanService (docs/scanning.md, "Scan on push")."""
