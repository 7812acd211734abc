"""The DynamoDB adapters of the storage ports, one module per concept, on one table:

- ``table.py``: the table wrapper, attribute marshalling, the conditional-write helper;
- ``blobs.py``: BlobIndex; ``uploads.py``: UploadSessions;
- ``manifests.py``: ManifestIndex (manifests, tags, referrers, catalog);
- ``identities.py``: AuthStore (identities, grants, signing keys);
- ``replication.py``: ReplicationStore (replication rules, their status, ordering guards).

Each is imported from its own module (``registry.py``), so an auth-off function never
imports ``identities``.
"""
